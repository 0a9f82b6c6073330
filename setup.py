"""The renderer's one compiled module (memeforge_renderer.engine._blend); the rest is in
pyproject.toml. Optional: the api and consumer images have no compiler and never draw;
scripts/setup-venv.sh and the renderer's image check that it built."""

from pathlib import Path

from setuptools import Extension, setup

SOURCE = "services/renderer/memeforge_renderer/engine/_blend.c"

setup(
    ext_modules=[Extension("memeforge_renderer.engine._blend", [SOURCE], optional=True)]
    if Path(SOURCE).exists()
    else [],
)
