"""Failure drills run against the dev stack: chaos (kills, outage, poison), key rotation."""
