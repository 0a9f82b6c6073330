"""The memeforge CLI as a person runs it: the console script, as a subprocess, against a
real stack. Includes a 50-row batch with the renderer stopped halfway and restarted."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from devenv.run.stack import Stack
from tests.support.images import gradient

pytestmark = pytest.mark.e2e

MEMEFORGE = str(Path(sys.executable).with_name("memeforge"))
BATCH_ROWS = 50
SETTLE_S = 180  # bound on every wait below; none is a timing assertion


def cli_env(stack: Stack, key: str | None = None) -> dict[str, str]:
    env = {**os.environ, "MEMEFORGE_API": stack.api_url, "COLUMNS": "120"}
    env.pop("MEMEFORGE_API_KEY", None)
    env["MEMEFORGE_CONFIG"] = os.devnull + ".absent"  # no profile file: the environment only
    env["MEMEFORGE_KEY"] = stack.api_key if key is None else key
    return env


def cli(
    stack: Stack, *args: str, key: str | None = None, timeout: float = SETTLE_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEMEFORGE, *args], env=cli_env(stack, key), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_templates_list_show_and_upload(stack: Stack, tmp_path: Path) -> None:
    listed = cli(stack, "templates", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = {json.loads(line)["id"] for line in listed.stdout.splitlines()}
    assert {"sunset-hills", "night-sky", "tall-checker"} <= ids

    shown = cli(stack, "templates", "show", "tall-checker")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["boxes"]) == 3

    image = tmp_path / "cli.png"
    image.write_bytes(gradient(200, 100, fmt="PNG"))
    uploaded = cli(stack, "templates", "upload", str(image), "--name", "CLI upload")
    assert uploaded.returncode == 0, uploaded.stderr
    assert "uploaded cli-upload (200x100)" in uploaded.stdout

    again = cli(stack, "templates", "upload", str(image), "--name", "CLI upload")
    assert again.returncode == 1
    assert "409 template-exists" in again.stderr  # the problem detail, in words

    no_key = cli(stack, "templates", "list", key="")
    assert no_key.returncode == 1
    assert "401 unauthorized: A valid API key is required" in no_key.stderr

    profile = tmp_path / "config.toml"
    profile.write_text(f'[local]\napi = "{stack.api_url}"\nkey = "{stack.api_key}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMEFORGE_")}
    by_profile = subprocess.run(
        [MEMEFORGE, "--profile", "local", "templates", "list", "--limit", "1", "--json"],
        env={**env, "MEMEFORGE_CONFIG": str(profile)}, capture_output=True, text=True,
        timeout=SETTLE_S,
    )  # fmt: skip
    assert by_profile.returncode == 0, by_profile.stderr
    assert len(by_profile.stdout.splitlines()) == 1

    missing = cli(stack, "templates", "show", "no-such-one")
    assert missing.returncode == 1
    assert "404 template-not-found" in missing.stderr


def test_create_waits_over_sse_and_downloads(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "meme.webp"
    made = cli(
        stack, "create", "sunset-hills", "--top", "from the", "--bottom", "command line",
        "--format", "webp", "--wait", "-o", str(out),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    states = [line.split()[1] for line in made.stdout.splitlines() if len(line.split()) == 2]
    assert states[0] == "PENDING"
    assert states[-1] == "DONE"
    with Image.open(out) as image:
        assert image.format == "WEBP"
        assert image.size == (800, 600)

    meme_id = made.stdout.split()[0]
    status = cli(stack, "status", meme_id)
    assert status.returncode == 0, status.stderr
    for state in ("PENDING", "DONE"):  # RENDERING only for a slow render
        assert state in status.stdout
    assert "QUEUED" not in status.stdout  # the consumer writes no QUEUED
    assert "800x600 image/webp" in status.stdout


def test_create_with_boxes_and_errors_exit_non_zero(stack: Stack, tmp_path: Path) -> None:
    box = {"text": "boxed", "x": 0.1, "y": 0.1, "width": 0.5, "height": 0.3, "color": "#ff0000"}
    made = cli(stack, "create", "night-sky", "--box", json.dumps(box), "-o", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert list(tmp_path.glob("*.jpg"))

    invalid = cli(stack, "create", "night-sky")  # no caption at all
    assert invalid.returncode == 1
    assert "422 validation-failed" in invalid.stderr

    failed = cli(stack, "create", "no-such-template", "--top", "x", "--wait")
    assert failed.returncode == 1
    assert "FAILED template_not_found" in failed.stderr

    unknown = cli(stack, "status", "0" * 32)
    assert unknown.returncode == 1
    assert "404 meme-not-found" in unknown.stderr


def _captions(path: Path, rows: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["template", "top", "bottom"])
        for n in range(rows):
            template = ("sunset-hills", "night-sky", "ocean-waves")[n % 3]
            writer.writerow([template, f"batch row {n}", "survives a renderer restart"])


def _images(outdir: Path) -> int:
    return len(list(outdir.glob("*.jpg")))


def _wait_for(what: str, condition: object, timeout: float = SETTLE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_batch_survives_a_renderer_restart_and_resumes(stack: Stack, tmp_path: Path) -> None:
    captions = tmp_path / "captions.csv"
    outdir = tmp_path / "out"
    _captions(captions, BATCH_ROWS)
    run = subprocess.Popen(
        [MEMEFORGE, "batch", str(captions), "-o", str(outdir), "--concurrency", "4"],
        env=cli_env(stack), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for("the first images", lambda: outdir.exists() and _images(outdir) >= 10)
        stack.stop_service("renderer")
        stopped_at = _images(outdir)
        assert stopped_at < BATCH_ROWS, "the batch finished before the renderer stopped"
        assert run.poll() is None, "the batch gave up while the renderer was down"
        stack.start_service("renderer")
        stdout, stderr = run.communicate(timeout=SETTLE_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, stderr
    assert f"{BATCH_ROWS} rows: {BATCH_ROWS} done, 0 skipped" in stdout
    assert _images(outdir) == BATCH_ROWS
    for image in outdir.glob("*.jpg"):
        with Image.open(io.BytesIO(image.read_bytes())) as decoded:
            decoded.verify()
    assert not list(outdir.glob(".*.part"))

    (outdir / "row-0007.jpg").unlink()  # one lost output: only that row is made again
    rerun = cli(stack, "batch", str(captions), "-o", str(outdir))
    assert rerun.returncode == 0, rerun.stderr
    assert f"{BATCH_ROWS} rows: 1 done, {BATCH_ROWS - 1} skipped" in rerun.stdout
    assert _images(outdir) == BATCH_ROWS


def test_batch_reports_bad_rows_and_exits_non_zero(stack: Stack, tmp_path: Path) -> None:
    captions = tmp_path / "mixed.csv"
    captions.write_text("template,top,name\nsunset-hills,fine,good\nno-such-template,x,bad\n")
    result = cli(stack, "batch", str(captions), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "2 rows: 1 done, 0 skipped" in result.stdout
    assert "row 2 (bad.jpg): FAILED template_not_found" in result.stderr
    assert (tmp_path / "out" / "good.jpg").exists()
