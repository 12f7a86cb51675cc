"""A fake Telegram Bot API server on 127.0.0.1, built from the Bot API documentation
(https://core.telegram.org/bots/api), not from syncd's client:

- "Making requests": ``https://api.telegram.org/bot<token>/METHOD_NAME``; GET or POST, with
  parameters as a query string, ``application/x-www-form-urlencoded``,
  ``application/json`` or ``multipart/form-data``. "The response contains a JSON object,
  which always has a Boolean field 'ok' ... If 'ok' equals True, the request was successful
  and the result of the query can be found in the 'result' field. In case of an unsuccessful
  request, 'ok' equals false and the error is explained in the 'description'. An Integer
  'error_code' field is also returned ... Some errors may also have an optional field
  'parameters' of the type ResponseParameters".
- ResponseParameters.retry_after: "In case of exceeding flood control, the number of
  seconds left to wait before the request can be repeated" (answered with 429 Too Many
  Requests: ``{"ok":false,"error_code":429,"description":"Too Many Requests: retry after
  N","parameters":{"retry_after":N}}``).
- sendMessage: ``chat_id`` (Integer or String ``@channelusername``) and ``text`` ("1-4096
  characters after entities parsing") are required; ``parse_mode`` ``HTML`` supports
  ``<b>, <strong>, <i>, <em>, <u>, <ins>, <s>, <strike>, <del>, <span
  class="tg-spoiler">, <tg-spoiler>, <a href>, <tg-emoji>, <code>, <pre>, <blockquote>``,
  and "All <, > and & symbols that are not a part of a tag or an HTML entity must be
  replaced with the corresponding HTML entities". "On success, the sent Message is
  returned" (``message_id``, ``date``, ``chat``, ``text``).

Faults (``syncd_fakes.http.Fault``, matched against ``/<method name>``): ``429`` (flood
control, ``retry_after`` seconds: the fake's attribute) and ``502`` (a proxy's HTML page).
"""

from __future__ import annotations

import json
import threading
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

from syncd_fakes.http import GATEWAY_PAGE, FakeHandler, FakeHTTPServer, Fault, choose_fault

ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span",
                "tg-spoiler", "a", "tg-emoji", "code", "pre", "blockquote"}
TEXT_LIMIT = 4096


class _EntityParser(HTMLParser):
    """Telegram's HTML parse mode, as far as the docs describe it: the allowed tags only;
    the text left after parsing is what the message says."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[str] = []
        self.problem: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS and self.problem is None:
            self.problem = f"can't parse entities: Unsupported start tag \"{tag}\""
        if tag == "a":
            self.links += [value or "" for name, value in attrs if name == "href"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


class FakeTelegram(FakeHTTPServer):
    handler_class = FakeHandler
    thread_name = "fake-telegram"

    def __init__(self, token: str, chats: set[str], *, faults: list[Fault] | None = None,
                 retry_after: int = 7) -> None:
        self.token = token
        self.chats = chats
        self.faults = list(faults or [])
        self.retry_after = retry_after
        self.messages: list[dict[str, Any]] = []  # every message delivered, in order
        self.requests: list[str] = []  # every method called (paths never hold the token)
        self._lock = threading.Lock()
        self._bind()

    def handle(self, handler: FakeHandler, method: str) -> None:
        url = urlsplit(handler.path)
        head, _, name = url.path.lstrip("/").partition("/")
        with self._lock:
            self.requests.append(name)
            fault = choose_fault(self.faults, lambda f: f.matches(method, "/" + name))
        if fault is not None and fault.kind == "502":
            handler.reply_raw(502, GATEWAY_PAGE, "text/html")
            return
        if fault is not None and fault.kind == "429":
            handler.reply(429, {"ok": False, "error_code": 429,
                                "description": f"Too Many Requests: retry after "
                                               f"{self.retry_after}",
                                "parameters": {"retry_after": self.retry_after}})
            return
        if head != f"bot{self.token}":
            handler.reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        if name.casefold() != "sendmessage":
            handler.reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        params = self._params(handler, url.query)
        self._send_message(handler, params)

    @staticmethod
    def _params(handler: FakeHandler, query: str) -> dict[str, Any]:
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        kind = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind == "application/json" and body:
            params.update(json.loads(body))
        elif kind == "application/x-www-form-urlencoded" and body:
            params.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
        return params

    def _send_message(self, handler: FakeHandler, params: dict[str, Any]) -> None:
        def bad(description: str) -> None:
            handler.reply(400, {"ok": False, "error_code": 400,
                                "description": f"Bad Request: {description}"})

        chat = params.get("chat_id")
        if chat in (None, ""):
            bad("chat_id is empty")
            return
        if str(chat) not in self.chats:
            bad("chat not found")
            return
        raw = str(params.get("text") or "")
        text, links = raw, []
        if params.get("parse_mode") == "HTML":
            parser = _EntityParser()
            parser.feed(raw)
            parser.close()
            if parser.problem:
                bad(parser.problem)
                return
            text, links = "".join(parser.text), parser.links
        if not text.strip():
            bad("message text is empty")
            return
        if len(text) > TEXT_LIMIT:
            bad("message is too long")
            return
        with self._lock:
            message = {"message_id": len(self.messages) + 1, "date": int(time.time()),
                       "chat": {"id": int(chat) if str(chat).lstrip("-").isdigit() else chat,
                                "type": "private"},
                       "text": text}
            self.messages.append({**message, "html": raw, "links": links})
        handler.reply(200, {"ok": True, "result": message})
