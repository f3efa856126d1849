"""Byte-level transports: pipes to the client and to upstream child processes."""
