"""The renderer's start-up CPU check, with an injected /proc/cpuinfo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from memeforge_renderer.cpu import WRONG_CPU_EXIT_STATUS, check_cpu, cpu_flags, required_flags

pytestmark = pytest.mark.unit

OLD_XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 sse sse2 ssse3 sse4_1 sse4_2 popcnt avx
"""
HASWELL = OLD_XEON.replace("popcnt avx", "popcnt avx avx2 fma bmi2")


def _cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_a_cpu_without_avx2_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    """docs/deploy.md "Placement": no AVX2, a clear refusal, not SIGILL."""
    problem = check_cpu(["avx2"], _cpuinfo(tmp_path, OLD_XEON))
    assert problem is not None
    assert "lacks avx2" in problem
    assert "PILLOW_SIMD_AVX2=0" in problem


def test_a_cpu_with_avx2_passes(tmp_path: Path) -> None:
    assert check_cpu(["avx2"], _cpuinfo(tmp_path, HASWELL)) is None
    assert cpu_flags(_cpuinfo(tmp_path, HASWELL)) >= {"avx2", "sse4_2"}  # type: ignore[operator]


def test_no_requirement_or_no_flags_to_read_passes(tmp_path: Path) -> None:
    assert check_cpu([], _cpuinfo(tmp_path, OLD_XEON)) is None
    assert check_cpu(["avx2"], tmp_path / "missing") is None  # not Linux: cannot tell
    assert check_cpu(["avx2"], _cpuinfo(tmp_path, "processor\t: 0\n")) is None  # e.g. arm64


def test_the_setting_names_the_flags() -> None:
    assert required_flags("") == []
    assert required_flags("avx2, fma") == ["avx2", "fma"]
    # This checkout's pillow-simd on x86-64 is an AVX2 build (make setup: cc -mavx2).
    if os.uname().machine == "x86_64":
        assert required_flags("auto") == ["avx2"]


def test_the_renderer_refuses_to_start_on_a_cpu_it_cannot_run_on() -> None:
    """docs/deploy.md "Placement": "refusing to start: this CPU lacks avx2".
    Through the real entry point: a flag this CPU lacks stops it with a message."""
    env = {**os.environ, "MEMEFORGE_RENDERER_CPU_FLAGS": "no_such_cpu_flag"}
    result = subprocess.run(
        [sys.executable, "-m", "memeforge_renderer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == WRONG_CPU_EXIT_STATUS
    assert "refusing to start" in result.stderr
    assert "no_such_cpu_flag" in result.stderr
