"""One digest, three shapes: plain text (the e-mail's text part, ``syncd digest --dry-run``),
the e-mail's HTML part, and a Telegram message (``parse_mode: HTML``, whose few tags are
``<b>`` and ``<a href>``; at most 4096 characters, https://core.telegram.org/bots/api#sendmessage).
"""

from __future__ import annotations

from html import escape

from syncd.digests.content import Digest, Span

#: sendMessage: "Text of the message to be sent, 1-4096 characters after entities parsing".
TELEGRAM_LIMIT = 4096


def _text_span(span: Span) -> str:
    return f"{span.text} <{span.url}>" if span.url else span.text


def as_text(digest: Digest) -> str:
    lines = [digest.subject, "", digest.intro]
    for section in digest.sections:
        lines += ["", section.title, "-" * len(section.title)]
        lines += ["- " + "".join(_text_span(s) for s in row) for row in section.rows]
    return "\n".join(lines) + "\n"


def _html_span(span: Span) -> str:
    text = escape(span.text, quote=False)
    if span.bold:
        text = f"<b>{text}</b>"
    if span.url:
        text = f'<a href="{escape(span.url)}">{text}</a>'
    return text


def as_html(digest: Digest) -> str:
    """The e-mail's HTML part: plain markup, readable in any mail client and on a phone."""
    parts = [f'<!DOCTYPE html><html lang="{digest.language}"><head><meta charset="utf-8">'
             f"<title>{escape(digest.subject)}</title></head>"
             '<body style="font-family:sans-serif;max-width:40em">',
             f"<h2>{escape(digest.subject)}</h2>", f"<p>{escape(digest.intro)}</p>"]
    for section in digest.sections:
        parts.append(f"<h3>{escape(section.title)}</h3><ul>")
        parts += ["<li>" + "".join(_html_span(s) for s in row) + "</li>"
                  for row in section.rows]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def as_telegram(digest: Digest) -> str:
    """The Telegram message; rows that do not fit the limit are left out, saying so."""
    head = f"<b>{escape(digest.subject, quote=False)}</b>\n{escape(digest.intro, quote=False)}"
    blocks = [head]
    for section in digest.sections:
        blocks.append(f"\n<b>{escape(section.title, quote=False)}</b>")
        blocks += ["• " + "".join(_html_span(s) for s in row) for row in section.rows]
    message, left = "", 0
    for index, block in enumerate(blocks):
        if len(message) + len(block) + 40 > TELEGRAM_LIMIT:
            left = len(blocks) - index
            break
        message += ("\n" if message else "") + block
    if left:
        message += f"\n… (+{left})"
    return message


__all__ = ["TELEGRAM_LIMIT", "as_html", "as_telegram", "as_text"]
