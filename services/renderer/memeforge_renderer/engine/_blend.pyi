from collections.abc import Sequence

from typing_extensions import Buffer

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
