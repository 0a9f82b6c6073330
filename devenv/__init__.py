"""Developer environment: an AWS emulator on loopback and the services as processes.

Nothing here is imported by the services; they only ever see AWS_* variables.
"""
