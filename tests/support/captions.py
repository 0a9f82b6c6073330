"""Captions no render may take long on: the engine tests check they render correctly,
bench/render.py times the slowest (``pathological_max_ms``)."""

from __future__ import annotations

PATHOLOGICAL = (
    "x" * 10_000,
    "\u0645\u0631\u062d\u0628\u0627" * 2_000,  # one 10,000-letter Arabic "word"
    "\U0001f600" * 5_000,
    "\U0001f468\u200d\U0001f469\u200d\U0001f467" * 2_000,
    "e" + "\u0301" * 9_999,  # one character carrying 9,999 marks
    "\u200d" * 10_000,
    "\n" * 9_999 + "a",
    "\u6211" * 10_000,
)
