"""bench.pipeline keeps its directory, and shows the logs' last lines, when a run fails:
a failed start ("consumer metrics exited with code 1") is diagnosable afterwards."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bench import pipeline

pytestmark = pytest.mark.unit


def test_a_failed_run_keeps_its_directory_and_prints_the_logs_tails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_start(_args: object, workdir: Path) -> dict[str, object]:
        lines = [f"line {i}" for i in range(30)] + ["Traceback: consumer exploded"]
        (workdir / "consumer.log").write_text("\n".join(lines) + "\n")
        raise RuntimeError("consumer metrics exited with code 1 before it was ready")

    monkeypatch.setattr(pipeline, "measure", failing_start)
    monkeypatch.setattr("sys.argv", ["bench.pipeline"])
    with pytest.raises(RuntimeError, match="exited with code 1"):
        pipeline.main()

    err = capsys.readouterr().err
    found = re.search(r"its directory is kept: (\S+)", err)
    assert found is not None
    kept = Path(found.group(1))
    try:
        assert (kept / "consumer.log").is_file()
        assert "Traceback: consumer exploded" in err
        assert "line 11" in err  # the last 20 lines
        assert "line 10\n" not in err
    finally:
        shutil.rmtree(kept)


def test_a_successful_run_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[Path] = []

    def measured(_args: object, workdir: Path) -> dict[str, object]:
        used.append(workdir)
        (workdir / "api.log").write_text("fine\n")
        return {}

    monkeypatch.setattr(pipeline, "measure", measured)
    monkeypatch.setattr(pipeline, "report", lambda *_: {})
    monkeypatch.setattr("sys.argv", ["bench.pipeline"])
    pipeline.main()
    assert used
    assert not used[0].exists()
