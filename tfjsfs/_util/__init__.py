"""tfjsfs._util."""
