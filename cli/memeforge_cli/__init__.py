"""memeforge's command-line client: REST calls only, no import of the services' code."""
