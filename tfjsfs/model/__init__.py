"""tfjsfs.model."""
