from __future__ import annotations

from importlib import metadata
from typing import Any

import PIL
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
