from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from memeforge_common.pillow import pillow_build

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Liveness/readiness: the process serves requests. Never depends on AWS reachability."""
    build = pillow_build()
    pillow = {"distribution": build["distribution"], "version": build["version"]}
    return {"status": "ok", "pillow": pillow}
