from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from memeforge_common.pillow import pillow_build
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Liveness/readiness: the process serves requests. Never depends on AWS reachability."""
    build = pillow_build()
    pillow = {"distribution": build["distribution"], "version": build["version"]}
    return {"status": "ok", "pillow": pillow}


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
