# ruff: noqa: RUF001  (Russian texts; the "count" in one translation below is a Cyrillic look-alike typo on purpose)
"""The message catalogues: every text the code asks for has its Russian, and the machinery
(syncd.i18n over Babel) serves it: plural forms, fallbacks, Jinja2, errors."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from syncd import i18n, i18n_catalogues
from syncd.i18n import LANGUAGES, domains, translator


def all_domains() -> list[str]:
    return sorted({*domains(), *(p.stem for p in i18n.LOCALE_DIR.glob("*.cfg"))})


@pytest.mark.parametrize("domain", all_domains())
def test_every_text_of_the_domain_has_its_russian(domain: str) -> None:
    """Extract every gettext call and N_() of the domain's files (its Babel mapping) and
    compare with the .po: nothing missing, nothing empty or fuzzy, nothing stale, and no
    placeholder in a translation that the English lacks."""
    assert i18n_catalogues.problems(domain) == []


def test_the_shipped_catalogues_are_not_empty() -> None:
    """The extraction really finds the code's texts (a broken mapping would find nothing
    and the test above would pass vacuously)."""
    assert "audit" in domains()
    found = i18n_catalogues.extract("audit")
    assert len([m for m in found if m.id]) >= 20
    assert translator("ru", "audit").gettext("Deal has no contact person linked to it.") \
        == "К сделке не привязано контактное лицо."


def test_english_is_the_message_id_and_unknown_languages_are_refused() -> None:
    assert LANGUAGES == ("ru", "en")
    en = translator("en", "audit")
    assert en.gettext("Deal has no contact person linked to it.") \
        == "Deal has no contact person linked to it."
    assert translator("ru-RU", "audit") is translator("ru-RU", "audit")
    assert translator("ru_RU", "audit").lang == "ru"
    with pytest.raises(ValueError, match="unknown language 'de'"):
        translator("de", "audit")
    with pytest.raises(LookupError, match="no message catalogue for domain 'nope'"):
        translator("en", "nope")


def test_numbers_and_days_in_the_readers_format() -> None:
    ru, en = translator("ru", "audit"), translator("en", "audit")
    assert ru.number(1234.5, 1) == "1\xa0234,5"
    assert en.number(1234.5, 1) == "1,234.5"
    assert ru.percent(0.25) == "25\xa0%"
    assert en.percent(0.255, 1) == "25.5%"
    assert ru.date(date(2026, 3, 1)).replace("\u202f", " ") == "1 мар. 2026 г."
    assert ru.date(date(2026, 3, 1), "short") == "01.03.2026"
    assert en.date(date(2026, 3, 1)) == "Mar 1, 2026"


# -- the machinery, on a catalogue tree of the test's own --------------------------------


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with one module, one domain "shop" and its Russian catalogue."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "shop.py").write_text(textwrap.dedent('''
        def say(t, n):
            return [t.gettext("Basket"), t.ngettext("{n} deal", "{n} deals", n),
                    N_("Marked")]
    '''), encoding="utf-8")
    locale = tmp_path / "syncd" / "locale"
    (locale / "ru" / "LC_MESSAGES").mkdir(parents=True)
    (locale / "shop.cfg").write_text("[python: app/**.py]\n", encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    monkeypatch.setattr(i18n_catalogues, "LOCALE_DIR", locale)
    monkeypatch.setattr(i18n_catalogues, "ROOT", tmp_path)
    i18n.translations.cache_clear()
    i18n.translator.cache_clear()
    yield tmp_path
    i18n.translations.cache_clear()
    i18n.translator.cache_clear()


def po(tree: Path) -> Path:
    return tree / "syncd" / "locale" / "ru" / "LC_MESSAGES" / "shop.po"


def translate(path: Path, texts: dict[str, str | tuple[str, ...]]) -> None:
    from babel.messages.pofile import read_po, write_po

    with path.open("rb") as f:
        catalog = read_po(f, locale="ru")
    for message in catalog:
        key = message.id if isinstance(message.id, str) else message.id[0]
        if key in texts:
            message.string = texts[key]
    with path.open("wb") as f:
        write_po(f, catalog)


def test_update_adds_new_texts_and_the_check_names_what_is_missing(tree: Path) -> None:
    assert i18n_catalogues.main(["update", "shop"]) == 1  # added, not yet translated
    missing = i18n_catalogues.problems("shop")
    assert len(missing) == 3
    assert all("has no translation" in p for p in missing)
    translate(po(tree), {"Basket": "Корзина", "{n} deal": ("{n} сделка", "{n} сделки"),
                         "Marked": "Отмечено"})
    assert [p.split(": ", 1)[1] for p in i18n_catalogues.problems("shop")] \
        == ["'{n} deal' has no translation"]  # its third form is empty
    translate(po(tree), {"{n} deal": ("{n} сделка", "{n} сделки", "{сount} сделок")})
    assert "uses ['сount'], which the text does not have" in i18n_catalogues.problems("shop")[0]
    translate(po(tree), {"{n} deal": ("{n} сделка", "{n} сделки", "{n} сделок")})
    assert i18n_catalogues.problems("shop") == []

    t = translator("ru", "shop")
    assert t.gettext("Basket") == "Корзина"
    assert [t.ngettext("{n} deal", "{n} deals", n).format(n=n) for n in (1, 2, 5, 11, 21)] \
        == ["1 сделка", "2 сделки", "5 сделок", "11 сделок", "21 сделка"]

    # A text the code no longer uses, and one it newly uses, are both reported.
    (tree / "app" / "shop.py").write_text('def say(t):\n    return t.gettext("Till")\n',
                                          encoding="utf-8")
    found = i18n_catalogues.problems("shop")
    assert any("'Till' (used in app/shop.py:2) is not in the catalogue" in p for p in found)
    assert any("'Basket' is not used by the code any more" in p for p in found)
    i18n_catalogues.update("shop")
    assert "Basket" not in po(tree).read_text(encoding="utf-8")


def test_a_fuzzy_translation_is_not_served_and_is_reported(tree: Path) -> None:
    i18n_catalogues.update("shop")
    translate(po(tree), {"Basket": "Корзина", "{n} deal": ("{n} сделка", "{n} сделки",
                                                            "{n} сделок"), "Marked": "Отмечено"})
    text = po(tree).read_text(encoding="utf-8")
    po(tree).write_text(text.replace('msgid "Basket"', '#, fuzzy\nmsgid "Basket"'),
                        encoding="utf-8")
    assert translator("ru", "shop").gettext("Basket") == "Basket"
    assert any("fuzzy" in p for p in i18n_catalogues.problems("shop"))


def test_a_domain_without_a_mapping_file_is_reported(tree: Path) -> None:
    i18n_catalogues.update("shop")
    (tree / "syncd" / "locale" / "shop.cfg").unlink()
    assert "no mapping file" in i18n_catalogues.problems("shop")[0]


def test_jinja_templates_speak_the_language_with_escaping(tree: Path) -> None:
    import jinja2

    i18n_catalogues.update("shop")
    translate(po(tree), {"Basket": "Корзина", "{n} deal": ("{n} сделка", "{n} сделки",
                                                            "{n} сделок"), "Marked": "Отмечено"})
    source = ('<p>{{ _("Basket") }}: {{ name }}</p>'
              '<p>{{ ngettext("%(num)d deal", "%(num)d deals", n) }}</p><p>{{ x|number(1) }}</p>')
    loader = jinja2.DictLoader({"page.html": source})
    ru = i18n.jinja_env("ru", "shop", loader=loader).get_template("page.html")
    html = ru.render(name="<b>", n=3, x=1234.5)
    assert html.startswith("<p>Корзина: &lt;b&gt;</p>")
    assert "<p>3 deals</p>" in html  # an id the catalogue lacks falls back to English
    assert "1\xa0234,5" in html
    en = i18n.jinja_env("en", "shop", loader=loader).get_template("page.html")
    assert en.render(name="x", n=1, x=2).startswith("<p>Basket: x</p><p>1 deal</p>")


def test_a_text_is_english_until_said_in_another_language() -> None:
    import copy
    import pickle

    from syncd.errors import ConfigProblem
    from syncd.i18n import Text

    hint = Text("did you mean {names}?", names="'Бриф'")
    text = Text("pipeline {pipeline!r} has no stage {stage!r}; {hint}", pipeline="Продажи",
                stage="Брфи", hint=hint)
    assert text == "pipeline 'Продажи' has no stage 'Брфи'; did you mean 'Бриф'?"
    assert text.say("ru") == ("в воронке 'Продажи' нет этапа 'Брфи'; возможно, имелось в "
                              "виду 'Бриф'?")
    for copied in (copy.deepcopy(text), pickle.loads(pickle.dumps(text))):
        assert copied.say("ru") == text.say("ru")
    problem = ConfigProblem("t.yaml", "mapping.stages.Продажи.Брфи", text)
    assert str(problem).endswith("did you mean 'Бриф'?")
    assert problem.say("ru").startswith("t.yaml: mapping.stages.Продажи.Брфи: в воронке")
    assert ConfigProblem("t.yaml", "k", "plain text").say("ru") == "t.yaml: k: plain text"


def test_explanations_name_days_kinds_and_fields_as_their_reader_writes_them() -> None:
    from syncd.audit.texts import Texts

    ru, en = Texts("ru"), Texts("en")
    assert "с 05.02.2026 (лимит 14 дн.)" in ru.say("inactive", days=3, day="2026-02-05",
                                                    limit=14)
    assert "since 2026-02-05 (limit 14 days)" in en.say("inactive", days=3, day="2026-02-05",
                                                       limit=14)
    assert ru.say("gap.kinds", kinds=ru.or_list(["call", "meeting"])).endswith(
        "звонок или встреча")
    assert ru.say("gap.field", field="lead_source") == "не заполнено поле «источник лида»"
    assert en.say("gap.field", field="lead_source") == "the lead source field is empty"


def test_every_file_that_asks_for_a_translation_belongs_to_a_domain() -> None:
    """A module calling gettext (or marking N_/Nn_/Text) that no mapping file names would
    never be extracted: its texts would stay English without the test above noticing."""
    import re

    from babel.messages.frontend import parse_mapping_cfg
    from babel.util import pathmatch

    root = i18n_catalogues.ROOT
    patterns = []
    for cfg in i18n.LOCALE_DIR.glob("*.cfg"):
        with cfg.open(encoding="utf-8") as f:
            patterns += [pattern for pattern, _ in parse_mapping_cfg(f)[0]]
    asks = re.compile(r"\b(?:n?p?gettext)\(|(?<![\w.])(?:N_|Nn_|Text|_)\(")
    machinery = {"syncd/i18n.py", "syncd/i18n_catalogues.py"}
    sources = [*root.glob("syncd/**/*.py"), *root.glob("plugins/*/*/**/*.py"),
               *root.glob("syncd/templates/**/*.html"), *root.glob("syncd/templates/**/*.js")]
    asking, orphans = [], []
    for path in sources:
        name = path.relative_to(root).as_posix()
        if (name in machinery or "/vendor/" in name
                or not asks.search(path.read_text(encoding="utf-8"))):
            continue
        asking.append(name)
        if not any(pathmatch(pattern, name) for pattern in patterns):
            orphans.append(name)
    assert {"syncd/render.py", "syncd/templates/report_body.html"} <= set(asking)
    assert orphans == [], "add them to a syncd/locale/<domain>.cfg (docs/i18n.md)"
