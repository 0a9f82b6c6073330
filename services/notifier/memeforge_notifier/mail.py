"""One SES mail per ended meme that asked for one: the result link and the thumbnail.

The thumbnail rides inline (``cid:``) in a multipart/related message, which only
SendRawEmail can send. The link is presigned: the bucket stays private.
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import make_msgid

from memeforge_common.models import MemeState, MemeStatus

INLINE_IMAGE_MAX_BYTES = 2 * 1024 * 1024


def subject_of(item: MemeStatus) -> str:
    if item.state is MemeState.DONE:
        return f"Your meme is ready ({item.template_id})"
    return f"Your meme could not be made ({item.template_id})"


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
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = subject_of(item)
    # The same event always gets the same Message-ID: mail clients fold a duplicate.
    mail["Message-ID"] = f"<{event_id}@memeforge>"
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
