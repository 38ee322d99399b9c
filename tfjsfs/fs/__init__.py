"""tfjsfs.fs."""
