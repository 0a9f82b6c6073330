"""The CLI's pure parts: configuration precedence, Retry-After, CSV rows."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from memeforge_cli.batch import BatchError, read_rows
from memeforge_cli.client import MAX_RETRY_WAIT_S, Api, ApiProblem, retry_after_s
from memeforge_cli.config import DEFAULT_API, Config, ConfigError, load_config

pytestmark = pytest.mark.unit


@pytest.fixture
def profile_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[default]\napi = "http://a:1/"\n\n[prod]\napi = "https://b"\nkey = "mf_p"\n')
    monkeypatch.setenv("MEMEFORGE_CONFIG", str(path))
    monkeypatch.delenv("MEMEFORGE_API", raising=False)
    monkeypatch.delenv("MEMEFORGE_KEY", raising=False)
    monkeypatch.delenv("MEMEFORGE_API_KEY", raising=False)
    return path


def test_profile_then_environment_wins(profile_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config().api == "http://a:1"
    assert load_config("prod").key == "mf_p"
    monkeypatch.setenv("MEMEFORGE_API_KEY", "mf_run")  # as make run prints it
    assert load_config("prod").key == "mf_run"
    monkeypatch.setenv("MEMEFORGE_KEY", "mf_env")
    monkeypatch.setenv("MEMEFORGE_API", "http://env")
    assert load_config("prod") == Config(api="http://env", key="mf_env")


def test_unknown_profile_is_an_error(profile_file: Path) -> None:
    with pytest.raises(ConfigError, match="no profile"):
        load_config("staging")


def test_no_file_means_the_local_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMEFORGE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("MEMEFORGE_API", raising=False)
    monkeypatch.delenv("MEMEFORGE_KEY", raising=False)
    monkeypatch.delenv("MEMEFORGE_API_KEY", raising=False)
    assert load_config().api == DEFAULT_API
    assert load_config().key is None


def test_retry_after_seconds_date_and_cap() -> None:
    def answer(value: str | None) -> httpx.Response:
        return httpx.Response(503, headers={"retry-after": value} if value else {})

    assert retry_after_s(answer("3"), 0) == 3
    assert retry_after_s(answer("3600"), 0) == MAX_RETRY_WAIT_S
    assert retry_after_s(answer("Wed, 21 Oct 2015 07:28:00 GMT"), 0) == 0  # in the past
    assert 0 < retry_after_s(answer(None), 2) <= 2.0


def test_problem_is_described_with_code_detail_and_errors() -> None:
    problem = ApiProblem(
        422,
        {
            "title": "Invalid",
            "code": "validation-failed",
            "detail": "bad",
            "errors": [{"loc": ["body", "top"], "msg": "too long"}],
        },
    )
    assert problem.describe() == "422 validation-failed: Invalid: bad\n  body.top: too long"


def test_rows_name_their_outputs_and_reject_bad_input(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text(
        'template,top,bottom,format,name\nsunset-hills,a,b,,\nnight-sky,,,png,my/"odd" name\n'
    )
    rows = read_rows(csv, tmp_path / "out", "jpeg")
    assert [r.out.name for r in rows] == ["row-0001.jpg", "my-odd-name.png"]
    assert rows[0].body == {
        "template_id": "sunset-hills",
        "format": "jpeg",
        "top": "a",
        "bottom": "b",
    }
    assert rows[0].idempotency_key != rows[1].idempotency_key
    assert read_rows(csv, tmp_path / "out", "jpeg")[0].idempotency_key == rows[0].idempotency_key

    csv.write_text("template,format\nsunset-hills,bmp\n")
    with pytest.raises(BatchError, match="format 'bmp'"):
        read_rows(csv, tmp_path, "jpeg")
    csv.write_text("top\nx\n")
    with pytest.raises(BatchError, match="'template' column"):
        read_rows(csv, tmp_path, "jpeg")


async def test_429_and_503_are_retried_after_the_servers_delay() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"retry-after": "0"}, json={"code": "too-many-requests"}),
            httpx.Response(503, headers={"retry-after": "0"}, json={"code": "aws-unavailable"}),
            httpx.Response(200, json={"id": "x", "state": "DONE"}),
        ]
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return next(answers)

    config = Config(api="http://api", key="mf_k")
    async with Api(config, transport=httpx.MockTransport(handler)) as api:
        assert (await api.meme("x"))["state"] == "DONE"
    assert seen == ["Bearer mf_k"] * 3


async def test_other_errors_raise_the_problem_at_once() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404, json={"code": "meme-not-found", "title": "No such meme"})

    async with Api(
        Config(api="http://api", key=None), transport=httpx.MockTransport(handler)
    ) as api:
        with pytest.raises(ApiProblem) as raised:
            await api.meme("x")
    assert raised.value.code == "meme-not-found"
    assert calls == 1
