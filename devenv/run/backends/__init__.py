"""Emulator backends. Each starts processes on 127.0.0.1 and returns an Emulator."""
