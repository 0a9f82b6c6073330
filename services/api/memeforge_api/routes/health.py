from __future__ import annotations

from importlib import metadata
from typing import Any

import PIL
from fastapi import APIRouter

router = APIRouter(tags=["health"])


def _pillow_distribution() -> str:
    for dist in ("pillow-simd", "pillow"):
        try:
            metadata.version(dist)
            return dist
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Liveness/readiness: the process serves requests. Never depends on AWS reachability."""
    pillow = {"distribution": _pillow_distribution(), "version": PIL.__version__}
    return {"status": "ok", "pillow": pillow}
