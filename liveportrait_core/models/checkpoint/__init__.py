"""Checkpoint I/O: the official layout, reading and verifying weight files, the download, and the
synthetic recipe weights for tests and benchmarks."""
