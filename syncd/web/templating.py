"""The dashboard's templates (Jinja2, syncd/templates/dashboard/) in the reader's language.

The language is the tenant's (``language:`` in its file) unless the request says
``?lang=ru|en``; the index, which shows several tenants, uses ``?lang=`` or Russian (the
readers are Russian-speaking consultancies). Texts are in the "dashboard" catalogue
(syncd/locale/ru/LC_MESSAGES/dashboard.po); Jinja2 autoescapes every value, so CRM texts
(deal titles, names) are text, never markup.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from werkzeug.wrappers import Request

from syncd.i18n import LANGUAGES, jinja_env, normalize_language

DOMAIN = "dashboard"
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
CSS = "\n".join((TEMPLATES / name).read_text(encoding="utf-8")
                for name in ("dashboard.css", "dashboard/desk.css"))
#: Each language's own name, as its readers write it.
LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}

_envs: dict[str, jinja2.Environment] = {}
_lock = threading.Lock()


def environment(lang: str) -> jinja2.Environment:
    with _lock:
        if lang not in _envs:
            _envs[lang] = jinja_env(lang, DOMAIN)
        return _envs[lang]


def request_language(request: Request, default: str | None) -> tuple[str, bool]:
    """(language, whether ``?lang=`` chose it). An unknown ``?lang=`` is ignored."""
    asked = request.args.get("lang")
    if asked:
        try:
            return normalize_language(asked), True
        except ValueError:
            pass
    try:
        return normalize_language(default or "ru"), False
    except ValueError:
        return "ru", False


def render(name: str, request: Request, lang: str, **values: Any) -> str:
    """Render ``dashboard/<name>`` with what every page needs (links keep ``/t/<token>``)."""
    args = request.args

    def lang_query(code: str) -> str:
        return urlencode([*((k, v) for k, v in args.items(multi=True) if k != "lang"),
                          ("lang", code)])

    template = environment(lang).get_template(f"dashboard/{name}")
    return str(template.render(
        lang=lang, css=CSS, root=request.script_root,
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        lang_query=lang_query, **values))


__all__ = ["CSS", "DOMAIN", "LANGUAGE_NAMES", "environment", "render", "request_language"]
