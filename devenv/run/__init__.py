"""The dev run: an AWS emulator, the bootstrap and the four services as processes."""
