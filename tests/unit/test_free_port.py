"""devenv.run.proc.free_port hands out each port once per process."""

from __future__ import annotations

import socket

import pytest

from devenv.run import proc

pytestmark = pytest.mark.unit


def test_a_port_the_os_picks_again_is_not_handed_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The OS may pick a closed port again; here it does so on purpose.
    picks = iter([41001, 41001, 41001, 41002])

    class Picked(socket.socket):
        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", next(picks))

    monkeypatch.setattr(proc, "_HANDED_OUT", set())
    monkeypatch.setattr(socket, "socket", Picked)
    assert [proc.free_port(), proc.free_port()] == [41001, 41002]


def test_many_ports_in_a_row_are_distinct_and_bindable() -> None:
    ports = [proc.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))
