"""Which Pillow this process runs: pillow-simd or stock Pillow, and its codecs.

Shared by the renderer (logged at start, a warning without SIMD), the api's /healthz
and the benchmarks. Pillow is imported on first use: the consumer does not need it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from typing import Any

_FEATURES = ("freetype2", "raqm", "jpg", "libjpeg_turbo", "webp", "zlib")


@lru_cache(maxsize=1)
def pillow_build() -> dict[str, Any]:
    """E.g. {"distribution": "pillow-simd", "version": "12.1.1.post0", "simd": True, ...}."""
    import PIL
    from PIL import features

    names = metadata.packages_distributions().get("PIL", [])
    distribution = "pillow-simd" if any(n.lower() == "pillow-simd" for n in names) else "pillow"
    return {
        "distribution": distribution,
        "version": PIL.__version__,
        "simd": distribution == "pillow-simd",
        "features": {
            name: {
                "available": bool(features.check(name)),
                "version": features.version(name),
            }
            for name in _FEATURES
        },
    }
