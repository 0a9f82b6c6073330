"""Golden images of the layout model: see cases.py; regenerate with ``make golden-update``."""
