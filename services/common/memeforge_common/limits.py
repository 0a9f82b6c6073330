"""Every limit on what a client may ask for, defined once (docs/architecture.md, "Limits").

The api's request bodies and the stored/queued models (models.py) use these same
types, so a request the api accepts (202) is one the consumer and renderer accept too,
and an old or crafted message breaking a limit is refused the same way in the workers.
Operational limits that deployments tune (upload bytes, source pixels) are settings
whose defaults live here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

MAX_BOXES = 16
"""Text boxes per meme (and per template layout)."""

MAX_CAPTION_CHARS = 500
"""Characters per caption. With MAX_BOXES this bounds a meme item well under DynamoDB's
400 KB item limit (16 x 500 four-byte characters is 32 KB of spec)."""

MAX_TEMPLATE_NAME_CHARS = 200
MAX_TEMPLATE_METADATA_BYTES = 2048
"""S3's limit on user metadata (keys and values, as sent)."""

MAX_LAYOUT_METADATA_BYTES = 1600
"""The share of the template metadata a layout may take (the rest: name, width, height)."""

MAX_LAYOUT_FORM_CHARS = 16_000
"""The raw ``boxes`` form field of a template upload, before it is parsed."""

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Default of ``MEMEFORGE_MAX_UPLOAD_BYTES``: one template upload."""

MAX_SOURCE_PIXELS = 40_000_000
"""Default of ``MEMEFORGE_MAX_SOURCE_PIXELS``: a template's width x height, checked from
the header before decoding (upload and render)."""

MAX_FRAMES = 300
"""Default of ``MEMEFORGE_MAX_FRAMES``: frames of an animated template (upload and
render), counted from the file's blocks before any frame is decoded."""

MAX_ANIMATION_MS = 30_000
"""Default of ``MEMEFORGE_MAX_ANIMATION_MS``: an animated template's total duration."""

MAX_ANIMATION_PIXELS = 40_000_000
"""Default of ``MEMEFORGE_MAX_ANIMATION_PIXELS``: width x height x frames of an animated
template (a decompression bomb can hide in frames as well as in one frame's size)."""

MAX_OUTPUT_BYTES = 24 * 1024 * 1024
"""Default of ``MEMEFORGE_MAX_OUTPUT_BYTES``: an animated render's encoded bytes; a larger
one ends FAILED ``output_bytes_too_large`` (ask for a smaller ``max_side``)."""

MAX_CONCURRENT_UPLOAD_DECODES = 2
"""Template uploads one api process verifies at once (each may decode up to
MAX_SOURCE_PIXELS: ~155 MB for a 40 Mpx PNG); the others wait their turn."""

MAX_OUTPUT_PIXELS = 25_000_000
"""A render's output width x height (after ``max_side``), checked before any decoding: a
larger template renders only with a ``max_side`` that brings it under. Else FAILED
``output_too_large``."""

MAX_RENDER_WORK_PIXELS = 50_000_000
"""What a render may cost, in output pixels of caption work, checked before any decoding:
the area of every box, plus ``ROTATION_COST_FACTOR`` times the turned extent of every
rotated box. 16 full-image boxes on a 6324 px square template are 640 M. Else FAILED
``too_expensive``."""

ROTATION_COST_FACTOR = 4
"""Turning a box (bicubic, two masks) costs about this many times drawing it upright."""

MAX_ICC_PROFILE_BYTES = 128 * 1024
"""A template's ICC profile is copied into the output only up to this size (real profiles
are a few KB); a larger one is dropped. Thumbnails never carry one."""
TEMPLATE_CACHE_BYTES = 256 * 1024 * 1024
"""Default of ``MEMEFORGE_TEMPLATE_CACHE_BYTES``: template bytes in the renderer's parent."""

DECODED_TEMPLATE_CACHE_BYTES = 96 * 1024 * 1024
"""Default of ``MEMEFORGE_DECODED_TEMPLATE_CACHE_BYTES``: decoded templates, per pool process."""

ANIMATION_CACHE_BYTES = 128 * 1024 * 1024
"""Default of ``MEMEFORGE_ANIMATION_CACHE_BYTES``: decoded animated templates (their frames,
at one byte a pixel for GIF output), per pool process. An animation larger than this is
decoded for each render instead."""

GLYPH_CACHE_BYTES = 48 * 1024 * 1024
"""Default of ``MEMEFORGE_GLYPH_CACHE_BYTES``: glyph masks, per pool process."""

TOKEN_CACHE_BYTES = 16 * 1024 * 1024
"""Default of ``MEMEFORGE_TOKEN_CACHE_BYTES``: measured words (token metrics), per pool process."""

KERN_CACHE_BYTES = 4 * 1024 * 1024
"""Default of ``MEMEFORGE_KERN_CACHE_BYTES``: kerning pairs, per font face and pool process
(six bundled faces)."""

FONT_CACHE_BYTES = 48 * 1024 * 1024
"""Default of ``MEMEFORGE_FONT_CACHE_BYTES``: loaded font faces by (file, size), per pool
process (a CJK face costs over 1 MB)."""

FIT_CACHE_BYTES = 2 * 1024 * 1024
"""Default of ``MEMEFORGE_FIT_CACHE_BYTES``: each of the fitter's two caches (size lists,
per-size geometry), per pool process."""

MAX_BATCH_ITEMS = 500
"""Items in one ``POST /batches``: each is one meme (one PENDING item, one request message),
and the batch's archive holds up to this many outputs."""

MAX_BATCH_REQUEST_BYTES = 32 * 1024 * 1024
"""A batch's stored request (every item's resolved spec) as the batch sweeper reads it back:
500 items of 16 full boxes each stay well under it."""

MAX_ARCHIVE_MEMBER_BYTES = 64 * 1024 * 1024
"""An output copied into a batch's ZIP (a larger one is listed in its manifest, not copied);
with ``archive.READ_AHEAD`` it bounds the archiver's memory."""

MAX_SOURCE_URL_CHARS = 2048
"""A template's ``source_url``."""

MAX_SOURCE_REDIRECTS = 3
"""Redirects a template fetch from ``source_url`` follows, each target checked again."""

UPLOAD_POLICY_TTL_S = 600
"""Default of ``MEMEFORGE_UPLOAD_POLICY_TTL_S``: how long a direct-upload form (presigned
POST) may be used."""

INCOMING_RETENTION_DAYS = 1
"""Direct uploads never completed are deleted by a lifecycle rule on ``incoming/`` after
this (S3 lifecycle counts whole days)."""

EGRESS_CONNECT_TIMEOUT_S = 3.0
"""Default of ``MEMEFORGE_EGRESS_CONNECT_TIMEOUT_S``: DNS and TCP/TLS connect to a
client-chosen URL (template source, webhook)."""

EGRESS_TIMEOUT_S = 10.0
"""Default of ``MEMEFORGE_EGRESS_TIMEOUT_S``: one whole outbound request, body included, so
a server that drips bytes cannot hold a worker or an api request longer."""

MAX_CALLBACK_URL_CHARS = 2048
"""A webhook ``callback_url`` (meme body, tenant endpoint)."""

MAX_EMAIL_CHARS = 254
"""A ``notify_email`` address (RFC 5321's path limit)."""

MAX_DELIVERY_RECORDS = 20
"""Delivery attempts kept on an item per channel (webhook, email); later ones go to the
logs only. The notifications queue's receive limit keeps far fewer in practice."""

MAX_WEBHOOK_RESPONSE_BYTES = 64 * 1024
"""Bytes of a webhook receiver's answer that the notifier reads before it hangs up."""

MAX_WAIT_S = 60.0
"""Longest long-poll a client may ask for; ``MEMEFORGE_MAX_LONG_POLL_S`` may lower it."""

Caption = Annotated[str, Field(max_length=MAX_CAPTION_CHARS)]

# What "some text" means, the same in the JSON schema (ECMA-262 regex, what clients and
# make fuzz check against) and in the code: ``\s`` differs between the two dialects (an
# ECMA ``\S`` matches U+001F, Python's ``str.strip`` removes it), so the class is spelled
# out: anything but ASCII controls, spaces and the Unicode space separators.
VISIBLE_CHAR_PATTERN = (
    r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
_VISIBLE_CHAR = re.compile(VISIBLE_CHAR_PATTERN)


def has_visible_text(text: str) -> bool:
    """The caption draws something: the rule that makes a blank caption 422."""
    return _VISIBLE_CHAR.search(text) is not None


Quality = Annotated[int, Field(ge=1, le=95, description="JPEG and WebP")]
OutputSide = Annotated[
    int, Field(ge=16, le=8192, description="longest output side in px; never enlarges")
]
ThumbnailSide = Annotated[
    int, Field(ge=16, le=1024, description="also make a thumbnail this long (same format)")
]
FontSize = Annotated[int, Field(ge=1, le=2000, description="px in the output image")]
# Control and space characters spelled out, not \s: Python's \s also matches \x1c-\x1f and
# JSON Schema's (ECMA) does not, so a client generated from the schema could send what the
# api refuses (found by schemathesis).
CallbackUrl = Annotated[
    str,
    Field(
        max_length=MAX_CALLBACK_URL_CHARS,
        pattern=r"^https?://[^\x00-\x20\x7f/?#]+[^\x00-\x20\x7f]*$",
        description="http(s) URL to POST signed webhooks to",
    ),
]
EmailAddress = Annotated[
    str,
    Field(
        max_length=MAX_EMAIL_CHARS,
        pattern=r"^[^@\x00-\x20\x7f<>,;\"]+@[^@\x00-\x20\x7f<>,;\"]+\.[^@\x00-\x20\x7f<>,;\"]+$",
        description="one address to mail the result to",
    ),
]
