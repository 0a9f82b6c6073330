"""The renderer's one compiled module (memeforge_renderer.engine._blend: the engine's hot
loops); the rest is in pyproject.toml. Optional: the api and consumer images have no
compiler and never draw; scripts/setup-venv.sh and the renderer's image check that it
built."""

from pathlib import Path

from setuptools import Extension, setup

SOURCE = "services/renderer/memeforge_renderer/engine/_blend.c"
# The fitter's arithmetic in _blend.c must round exactly as fit.py's Python floats do:
# no fused multiply-add (the default on CPUs that have one, e.g. arm64).
FLAGS = ["-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            "memeforge_renderer.engine._blend", [SOURCE], extra_compile_args=FLAGS, optional=True
        )
    ]
    if Path(SOURCE).exists()
    else [],
)
