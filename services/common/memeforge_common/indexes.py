"""The memes table's sparse secondary indexes that more than one store queries."""

from __future__ import annotations

# Items that are still moving: ``live_state`` exists only while a meme (its state) or a
# batch (``batch#<state>``) is not terminal, so sweepers query a few live items, never
# the table.
LIVE_INDEX = "live-items"
# A batch's memes in item order (``batch_id``, ``batch_seq``): only batch memes carry them.
BATCH_INDEX = "batch-items"
