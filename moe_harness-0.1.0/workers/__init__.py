"""Worker side of moe-harness: the daemon and everything that touches a model."""
