"""tfjsfs.format."""
