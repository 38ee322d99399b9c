"""tfjsfs.io."""
