"""One SES mail per ended meme (or batch) that asked for one.

A meme's mail carries the result link and the thumbnail. The thumbnail rides inline
(``cid:``) in a multipart/related message, which only SendRawEmail can send. A batch's
mail carries its counts and the archive's link, and no thumbnails: the ZIP is the
result, the mail stays a few KiB whatever the batch's size (SES caps a message at
10 MB), and no item is read to send it. Links are presigned: the bucket stays private.
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import make_msgid

from memeforge_common.models import Batch, MemeState, MemeStatus

INLINE_IMAGE_MAX_BYTES = 2 * 1024 * 1024


def subject_of(item: MemeStatus) -> str:
    if item.state is MemeState.DONE:
        return f"Your meme is ready ({item.template_id})"
    return f"Your meme could not be made ({item.template_id})"


def _headed(sender: str, recipient: str, subject: str, event_id: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = subject
    # The same event always gets the same Message-ID: mail clients fold a duplicate.
    mail["Message-ID"] = f"<{event_id}@memeforge>"
    return mail


def batch_subject(batch: Batch) -> str:
    return f"Your batch is ready: {batch.done} done, {batch.failed} failed"


def batch_mail(
    batch: Batch, *, sender: str, recipient: str, link: str, expires_in_s: int, event_id: str
) -> bytes:
    """The archive's link and the counts of an ended batch."""
    mail = _headed(sender, recipient, batch_subject(batch), event_id)
    # "Up to": a link signed by a role session dies with the session if that ends first.
    lifetime = f"the link works for up to {_duration(expires_in_s)}"
    counts = f"{batch.done} of {batch.total} done, {batch.failed} failed"
    mail.set_content(
        f"Your batch {batch.id} has ended: {counts}.\nDownload the ZIP ({lifetime}): {link}\n"
    )
    mail.add_alternative(
        f"<html><body><p>Your batch has ended: {html.escape(counts)}.</p>"
        f'<p><a href="{html.escape(link)}">Download the ZIP</a> ({lifetime})</p>'
        "</body></html>",
        subtype="html",
    )
    return mail.as_bytes()


def _duration(seconds: int) -> str:
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{max(1, seconds // 60)} min"


def meme_mail(
    item: MemeStatus,
    *,
    sender: str,
    recipient: str,
    link: str | None,
    image: bytes | None,
    image_type: str,
    event_id: str,
) -> bytes:
    mail = _headed(sender, recipient, subject_of(item), event_id)
    if item.state is MemeState.DONE and link:
        text = f"Your meme {item.id} is ready: {link}\n"
        markup = f'<p>Your meme is ready: <a href="{html.escape(link)}">open it</a></p>'
    else:
        reason = item.failure.reason if item.failure else "unknown"
        text = f"Your meme {item.id} could not be made: {reason}\n"
        markup = f"<p>Your meme could not be made: {html.escape(reason)}</p>"
    mail.set_content(text)
    if image is None:
        mail.add_alternative(f"<html><body>{markup}</body></html>", subtype="html")
        return mail.as_bytes()
    cid = make_msgid(domain="memeforge")
    markup += f'<p><img src="cid:{cid[1:-1]}" alt="thumbnail"></p>'
    mail.add_alternative(f"<html><body>{markup}</body></html>", subtype="html")
    maintype, _, subtype = image_type.partition("/")
    html_part = mail.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(image, maintype=maintype, subtype=subtype, cid=cid)
    return mail.as_bytes()
