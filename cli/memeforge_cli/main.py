"""``memeforge``: templates, memes and batches from the command line, over the REST API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from memeforge_cli.batch import BatchError, Row, read_rows, run_batch
from memeforge_cli.client import Api, ApiProblem, extension
from memeforge_cli.config import ConfigError, load_config

app = typer.Typer(
    help="memeforge from the command line. Configure with MEMEFORGE_API / MEMEFORGE_KEY "
    "or a profile in ~/.config/memeforge/config.toml.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
templates_app = typer.Typer(help="List, show and upload templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")
_state: dict[str, str] = {"profile": "default"}

FORMAT_OPTION = typer.Option("--format", "-f", help="jpeg, png, webp or gif")


@app.callback()
def _options(
    profile: Annotated[
        str, typer.Option("--profile", "-p", help="profile in the config file")
    ] = "default",
) -> None:
    _state["profile"] = profile


def _api() -> Api:
    try:
        return Api(load_config(_state["profile"]))
    except ConfigError as error:
        err.print(f"[red]config error:[/red] {error}")
        raise typer.Exit(2) from error


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command; API problems and unreachable APIs end it non-zero, in words."""
    try:
        return asyncio.run(coro)
    except ApiProblem as problem:
        err.print(f"[red]error:[/red] {problem.describe()}", highlight=False)
        raise typer.Exit(1) from problem
    except httpx.HTTPError as error:
        err.print(f"[red]error:[/red] cannot reach the API: {error!r}", highlight=False)
        raise typer.Exit(1) from error


@templates_app.command("list")
def templates_list(
    limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List templates (every page of the cursor)."""

    async def go() -> list[dict[str, Any]]:
        async with _api() as api:
            return [t async for t in api.templates(limit)]

    items = _run(go())
    if as_json:
        for item in items:
            out.print_json(json.dumps(item), indent=None)
        return
    table = Table("id", "name", "size", "boxes")
    for t in items:
        table.add_row(t["id"], t["name"], f"{t['width']}x{t['height']}", str(len(t["boxes"])))
    out.print(table)


@templates_app.command("show")
def templates_show(template_id: str) -> None:
    """Show one template, with its default boxes."""

    async def go() -> Any:
        async with _api() as api:
            return await api.json("GET", f"/templates/{template_id}")

    out.print_json(json.dumps(_run(go())))


@templates_app.command("upload")
def templates_upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str, typer.Option("--name", "-n", help="display name")],
    template_id: Annotated[str | None, typer.Option("--id", help="default: from the name")] = None,
    boxes: Annotated[str | None, typer.Option(help="JSON list of default boxes")] = None,
) -> None:
    """Upload an image as a new template."""

    async def go() -> dict[str, Any]:
        async with _api() as api:
            return await api.upload_template(file, name, template_id, boxes)

    template = _run(go())
    out.print(f"uploaded [bold]{template['id']}[/bold] ({template['width']}x{template['height']})")


def _meme_body(
    template: str, top: str, bottom: str, box: list[str], fmt: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"template_id": template}
    if box:
        try:
            body["boxes"] = [json.loads(b) for b in box]
        except ValueError as error:
            err.print(f"[red]error:[/red] --box is not JSON: {error}")
            raise typer.Exit(2) from error
    else:
        body["top"], body["bottom"] = top, bottom
    if fmt:
        body["format"] = fmt
    return body


@app.command()
def create(
    template: Annotated[str, typer.Argument(help="template id")],
    top: Annotated[str, typer.Option(help="top caption")] = "",
    bottom: Annotated[str, typer.Option(help="bottom caption")] = "",
    box: Annotated[
        list[str] | None,
        typer.Option(help="a text box as JSON (repeatable), instead of top/bottom"),
    ] = None,
    fmt: Annotated[str | None, FORMAT_OPTION] = None,
    wait: Annotated[bool, typer.Option(help="wait until DONE or FAILED")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="save the image here (implies --wait)")
    ] = None,
) -> None:
    """Create a meme; with --wait follow it over SSE; with -o download it."""
    body = _meme_body(template, top, bottom, box or [], fmt)

    async def go() -> dict[str, Any]:
        async with _api() as api:
            meme = await api.create(body)
            out.print(f"{meme['id']} {meme['state']}", highlight=False)
            if not (wait or output):
                return meme
            printed = meme["state"]
            async for meme in api.follow(meme["id"]):  # noqa: B020 (the latest state wins)
                if meme["state"] != printed:
                    out.print(f"{meme['id']} {meme['state']}", highlight=False)
                    printed = meme["state"]
            if meme["state"] == "DONE" and output is not None:
                target = output / f"{meme['id']}.{extension(meme)}" if output.is_dir() else output
                size = await api.download(meme, target)
                out.print(f"saved {target} ({size} bytes)", highlight=False)
            return meme

    meme = _run(go())
    if meme["state"] == "FAILED":
        _print_failure(meme)
        raise typer.Exit(1)


def _print_failure(meme: dict[str, Any]) -> None:
    failure = meme.get("failure") or {}
    err.print(f"[red]FAILED[/red] {failure.get('reason')}: {failure.get('detail', '')}")


@app.command()
def status(meme_id: str) -> None:
    """Show a meme's state and the time it entered each state."""

    async def go() -> dict[str, Any]:
        async with _api() as api:
            return await api.meme(meme_id)

    meme = _run(go())
    table = Table("state", "at", title=f"meme {meme['id']} · template {meme['template_id']}")
    for state, at in meme["state_times"].items():
        table.add_row(state, at)
    out.print(table)
    out.print(f"state: [bold]{meme['state']}[/bold]")
    if meme.get("result"):
        result = meme["result"]
        out.print(f"image: {result['width']}x{result['height']} {result['content_type']}")
    if meme["state"] == "FAILED":
        _print_failure(meme)


@app.command()
def batch(
    captions: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    outdir: Annotated[Path, typer.Option("--output", "-o", help="directory for the images")],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64)] = 4,
    fmt: Annotated[str, FORMAT_OPTION] = "jpeg",
) -> None:
    """One meme per CSV row (template, top, bottom | boxes, format, name). Resumable:
    rows whose image is already in the output directory are skipped."""
    try:
        rows = read_rows(captions, outdir, fmt)
    except BatchError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    outdir.mkdir(parents=True, exist_ok=True)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=out,
    )
    counts = {"done": 0, "skipped": 0, "failed": 0}

    def described() -> str:
        return " · ".join(f"{name} {n}" for name, n in counts.items())

    async def go() -> Any:
        with progress:
            task = progress.add_task("memes", total=len(rows), counts=described())

            def row_done(row: Row, outcome: str) -> None:
                counts[outcome] += 1
                progress.update(task, advance=1, counts=described())

            async with _api() as api:
                return await run_batch(api, rows, concurrency=concurrency, on_row_done=row_done)

    summary = _run(go())
    out.print(
        f"[bold]{len(rows)} rows[/bold]: {summary.done} done, {summary.skipped} skipped "
        f"(already in {outdir}), {len(summary.failed)} failed"
    )
    for row, why in summary.failed:
        err.print(f"  row {row.number} ({row.out.name}): {why}", highlight=False)
    if summary.failed:
        raise typer.Exit(1)
