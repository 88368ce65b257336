"""Decoding and pixel transforms: pure functions, no I/O beyond reading the given file."""
