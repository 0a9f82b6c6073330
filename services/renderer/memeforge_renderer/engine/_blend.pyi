from collections.abc import Callable, Sequence

from typing_extensions import Buffer

from .text import Token

def blend(
    dst: Buffer,
    width: int,
    height: int,
    bpp: int,
    colour: bytes,
    clip: tuple[int, int, int, int],
    ox: int,
    oy: int,
    masks: Sequence[tuple[bytes, int, int, int, int]],
    /,
) -> None: ...
def restart_segments(data: Buffer, start: int, end: int, /) -> list[bytes]: ...
def largest_fit(
    sizes: Sequence[int],
    paragraphs: Sequence[Sequence[Token]],
    space: float,
    box_w: int,
    box_h: int,
    outline_em: float,
    line_spacing: float,
    safety: int,
    exact: Callable[[int], bool],
    /,
) -> int | None: ...
