"""Start-up guard: refuse to run on a CPU that lacks what pillow-simd was built for.

pillow-simd is compiled with ``-mavx2`` for x86-64 (``make setup``, and the image with
``PILLOW_SIMD_AVX2=auto``); on a CPU without AVX2 the first resize dies with SIGILL, a
crash loop with no message. This module imports nothing of PIL, so it can check first
and exit with a clear message instead. An image built with ``PILLOW_SIMD_AVX2=0`` sets
``MEMEFORGE_RENDERER_CPU_FLAGS=""`` (no requirement).
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

# Exit status for "cannot run on this machine" (EX_CONFIG).
WRONG_CPU_EXIT_STATUS = 78


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags, or None where /proc/cpuinfo has none (not Linux/x86)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def default_required_flags() -> list[str]:
    """``auto``: AVX2 for pillow-simd on x86-64 (how this project builds it), else none."""
    try:
        metadata.distribution("pillow-simd")
    except metadata.PackageNotFoundError:
        return []
    return ["avx2"] if platform.machine().lower() in ("x86_64", "amd64") else []


def required_flags(setting: str) -> list[str]:
    return default_required_flags() if setting == "auto" else setting.replace(",", " ").split()


def check_cpu(required: list[str], cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """None when the CPU has every required flag (or they cannot be read); else why not."""
    flags = cpu_flags(cpuinfo)
    if not required or flags is None:
        return None
    missing = sorted(set(required) - flags)
    if not missing:
        return None
    return (
        f"this CPU lacks {', '.join(missing)}, which this renderer build requires "
        "(pillow-simd compiled with -mavx2 would die with SIGILL). Schedule it on a node "
        "with AVX2 (see docs/deploy.md), or use an image built with PILLOW_SIMD_AVX2=0 "
        'and MEMEFORGE_RENDERER_CPU_FLAGS="".'
    )
