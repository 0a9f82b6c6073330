"""Shared library of memeforge: settings, AWS clients, schemas, state machine, queue loop."""
