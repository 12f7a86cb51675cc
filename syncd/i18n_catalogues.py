"""Keep the message catalogues in step with the code (a developer's tool, and the i18n test).

Each domain has a Babel mapping file, ``syncd/locale/<domain>.cfg`` (the format of
``pybabel extract -F``), naming the source files whose strings belong to it, and a Russian
catalogue ``syncd/locale/ru/LC_MESSAGES/<domain>.po``. A module belongs to one domain.

    python -m syncd.i18n_catalogues update [DOMAIN ...]   # add new ids (empty), drop unused
    python -m syncd.i18n_catalogues check  [DOMAIN ...]   # what is missing; exit 1 if anything

``update`` is ``pybabel extract -F syncd/locale/D.cfg`` followed by ``pybabel update -D D``
with the settings this project uses (no fuzzy guesses, no line numbers). docs/i18n.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from syncd.i18n import LOCALE_DIR, catalogue_path, domains

#: The checkout's root: mapping patterns are relative to it.
ROOT = LOCALE_DIR.parents[1]
TRANSLATED = ("ru",)
_FIELD = re.compile(r"\{([^{}!:]*)[^{}]*\}|%\(([^)]+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")


def mapping_path(domain: str) -> Path:
    return LOCALE_DIR / f"{domain}.cfg"


def extract(domain: str) -> Catalog:
    """Every message the domain's source files ask for (the template a ``.pot`` would hold)."""
    with mapping_path(domain).open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, str(mapping_path(domain)))
    template = Catalog(domain=domain, project="syncd", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
            ROOT, method_map, options_map, keywords=DEFAULT_KEYWORDS,
            comment_tags=("Translators:",), strip_comment_tags=True):
        template.add(message, None, [(filename, lineno)], auto_comments=comments,
                     context=context)
    return template


def _read(lang: str, domain: str) -> Catalog:
    with catalogue_path(lang, domain).open("rb") as po:
        return read_po(po, locale=lang, domain=domain)


def _fields(text: str) -> set[str]:
    return {a or b for a, b in _FIELD.findall(text)}


def _message_problems(where: str, message: Message, plurals: int) -> list[str]:
    ident = message.id if isinstance(message.id, str) else message.id[0]
    strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
    texts = [text or "" for text in strings]
    problems = []
    if message.fuzzy:
        problems.append(f"{where}: {ident!r} is fuzzy (check it, drop the flag)")
    if isinstance(message.id, tuple | list) and len(texts) != plurals:
        problems.append(f"{where}: {ident!r} needs {plurals} plural forms, has {len(texts)}")
    if not all(texts):
        problems.append(f"{where}: {ident!r} has no translation")
        return problems
    ids = message.id if isinstance(message.id, tuple | list) else (message.id,)
    wanted = set().union(*(_fields(part) for part in ids))
    for text in texts:
        if not _fields(text) <= wanted:
            problems.append(f"{where}: the translation of {ident!r} uses "
                            f"{sorted(_fields(text) - wanted)}, which the text does not have")
    return problems


def problems(domain: str) -> list[str]:
    """What keeps the domain from being fully translated; empty when it is."""
    if not mapping_path(domain).is_file():
        return [f"{domain}: no mapping file {mapping_path(domain)} naming its source files"]
    template = extract(domain)
    wanted = {(m.id if isinstance(m.id, str) else m.id[0], m.context): m
              for m in template if m.id}
    found: list[str] = []
    for lang in TRANSLATED:
        catalog = _read(lang, domain)
        where = f"{lang}/LC_MESSAGES/{domain}.po"
        have = {(m.id if isinstance(m.id, str) else m.id[0], m.context): m
                for m in catalog if m.id}
        for key, message in wanted.items():
            if key not in have:
                files = ", ".join(sorted({f"{f}:{n}" for f, n in message.locations}))
                found.append(f"{where}: {key[0]!r} (used in {files}) is not in the catalogue "
                             f"(python -m syncd.i18n_catalogues update {domain})")
            elif isinstance(message.id, tuple) != isinstance(have[key].id, tuple):
                found.append(f"{where}: {key[0]!r} is plural in one place and not the other")
        for key, message in have.items():
            if key not in wanted:
                found.append(f"{where}: {key[0]!r} is not used by the code any more")
            else:
                found.extend(_message_problems(where, message, catalog.num_plurals))
        for message, errors in catalog.check():
            found.extend(f"{where}: {message.id!r}: {error}" for error in errors)
    return found


def update(domain: str) -> None:
    """Add the code's new ids to each catalogue (empty, to translate) and drop unused ones."""
    template = extract(domain)
    for lang in TRANSLATED:
        path = catalogue_path(lang, domain)
        if path.is_file():
            catalog = _read(lang, domain)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=lang, domain=domain, project="syncd", charset="utf-8",
                              fuzzy=False, header_comment=(
                                  f"# Russian texts of syncd, domain {domain!r} (docs/i18n.md)."
                                  "\n# Add or change a text: python -m syncd.i18n_catalogues "
                                  f"update {domain}"))
        catalog.update(template, no_fuzzy_matching=True)
        with path.open("wb") as po:
            write_po(po, catalog, width=100, include_lineno=False, ignore_obsolete=True,
                     sort_output=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"update", "check"}:
        print(__doc__)
        return 2
    chosen = argv[1:] or sorted({*domains(), *(p.stem for p in LOCALE_DIR.glob("*.cfg"))})
    if argv[0] == "update":
        for domain in chosen:
            update(domain)
    found = [problem for domain in chosen for problem in problems(domain)]
    print("\n".join(found) or f"{len(chosen)} domain(s) fully translated: {', '.join(chosen)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
