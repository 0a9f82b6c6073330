"""The dev run: an AWS emulator, the bootstrap and the three services as processes."""
