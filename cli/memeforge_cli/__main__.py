"""``python -m memeforge_cli``: the same as the ``memeforge`` console script."""

from memeforge_cli.main import app

app(prog_name="memeforge")
