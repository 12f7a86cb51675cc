"""Write a tenant file from an account's vocabulary: every mapping line with its evidence,
confidence and alternatives in a comment; every undecided one as a marked TODO.

The file is rendered as text (plain YAML with comments; scalars quoted only when YAML
needs it) so the comments sit exactly beside the lines they explain; the tests load the
result back with the tenant-file model. A TODO is a comment
``# TODO(syncd init) [dotted.key] what to decide`` that ``syncd check`` reports (see
``todos.py``); an undecided stage or loss reason is left out of the mapping (its deals are
reported as ``unmapped_stage`` / ``bad_loss_reason`` until it is decided), never guessed
silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml

from syncd.connector import Inspection
from syncd.i18n import Text, say
from syncd.onboarding.matching import (
    Guess,
    book_kinds,
    closed_semantics,
    match_fields,
    match_kind,
    match_pipeline,
    match_reason,
    split_type,
    teams_from_hierarchy,
)
from syncd.onboarding.messages import MESSAGES, TODO
from syncd.onboarding.usage import Usage
from syncd.salesbook import SalesBook

DEAL_FIELDS = ("lead_source", "profit", "is_tender", "public_incident", "snooze_until",
               "snooze_reason")
COMPANY_FIELDS = ("segment", "nps", "public_incidents", "channel", "sub_channel", "region")


def scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when YAML reads it back as the same string."""
    text = str(value)
    plain = (text and text == text.strip() and "#" not in text and ": " not in text
             and not text.endswith(":") and not re.match(r"[\[\]{}&*!|>'\"%@`,?-]", text))
    if plain:
        try:
            if yaml.safe_load(f"k: {text}") == {"k": text}:
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def _clean(text: str) -> str:
    return " ".join(str(text).split())


@dataclass
class Draft:
    """The drafted file's text and what it left undecided."""

    text: str
    decided: int = 0
    todos: list[str] = field(default_factory=list)  # dotted keys


@dataclass
class DraftInput:
    tenant: str
    plugin: str
    book: SalesBook
    connection: Mapping[str, Any]
    inspection: Inspection
    usage: Usage | None = None
    timezone: str = "UTC"
    currency: str = "EUR"
    language: str = "en"
    source: str = ""  # where the vocabulary came from (URL host or export path)
    timezone_given: bool = True
    book_reason: str = ""


class _Writer:
    def __init__(self, language: str = "en") -> None:
        self.language = language if language in MESSAGES else "en"
        self.messages = MESSAGES[self.language]
        self.lines: list[str] = []
        self.decided = 0
        self.todos: list[str] = []

    def t(self, key: str, **values: Any) -> str:
        return self.messages[key].format(**values)

    def say(self, text: str) -> str:
        """Evidence (a ``syncd.i18n.Text``) in the file's language."""
        return say(text, self.language)

    def clean(self, text: str) -> str:
        return _clean(self.say(text))

    def alts(self, guess: Guess) -> str:
        if not guess.alternatives:
            return ""
        return self.t("alternatives", names=", ".join(f"{t} {s:.2f}"
                                                       for t, s in guess.alternatives))

    def line(self, text: str = "") -> None:
        self.lines.append(text)

    def todo(self, indent: int, key: str, message: str) -> None:
        self.todos.append(key)
        self.line(" " * indent + f"# {TODO} [{key}] {_clean(message)}")


#: Connectors that read an export or a sheet, where a deal's outcome may be a stage value.
_TABULAR_PLUGINS = frozenset({"spreadsheet", "gsheets"})


def _connection(data: DraftInput) -> dict[str, Any]:
    return draft_connection(data.plugin, data.connection, data.inspection)


def draft_connection(plugin: str, given: Mapping[str, Any],
                     inspection: Inspection) -> dict[str, Any]:
    """The connection as given; for an export whose stage column holds the outcome
    («Успешно реализовано», "Closed - lost"), ``stage_status`` so those deals are won or
    lost, not open deals in an ignored stage."""
    connection = dict(given)
    if plugin not in _TABULAR_PLUGINS or "stage_status" in connection:
        return connection
    outcomes = {}
    for pipeline in inspection.pipelines:
        for stage in pipeline.get("stages") or []:
            name = str(stage.get("name") or "")
            outcome = closed_semantics(name, stage.get("semantics"))
            if name and outcome is not None:
                outcomes[name] = outcome
    if outcomes:
        connection["stage_status"] = outcomes
    return connection


def _deals(w: _Writer, usage: Usage | None, pipeline: str, stage: str) -> str:
    if usage is None:
        return ""
    return w.t("deals", total=usage.stage_count(pipeline, stage),
               open=usage.open_stages.get((pipeline, stage), 0))


def _stages(w: _Writer, data: DraftInput) -> None:
    book = data.book
    targets = ", ".join([s.key for s in book.stages] + ["deferred", "ignore"])
    w.line("  # " + w.t("stages", targets=targets))
    w.line("  stages:")
    if not data.inspection.pipelines:
        w.todo(4, "mapping.stages", w.t("no_pipelines"))
        w.line("    {}")
        return
    for pipeline in data.inspection.pipelines:
        name = str(pipeline.get("name") or pipeline.get("id"))
        stages = list(pipeline.get("stages") or [])
        guesses = match_pipeline(stages, book)
        decided = [g for g in guesses if g.decided]
        w.line(f"    {scalar(name)}:{' {}' if not decided else ''}"
               f"  # {w.t('pipeline', id=pipeline.get('id'), n=len(stages))}")
        for stage, guess in zip(stages, guesses, strict=True):
            stage_name = str(stage.get("name") or stage.get("id"))
            counts = _deals(w, data.usage, name, stage_name)
            if guess.decided:
                w.decided += 1
                target = "ignore" if guess.ignore else guess.target
                w.line(f"      {scalar(stage_name)}: {target}  # {counts}"
                       f"{w.clean(guess.evidence)} ({guess.confidence:.2f}){w.alts(guess)}")
            else:
                hint = (w.t("best", target=guess.target,
                            confidence=f"{guess.confidence:.2f}: {w.say(guess.evidence)}")
                        + w.alts(guess) if guess.target else w.say(guess.evidence))
                w.todo(6, f"mapping.stages.{name}.{stage_name}",
                       w.t("stage_todo", counts=counts, hint=hint))
                w.line(f"      # {scalar(stage_name)}: TODO")


def _loss_reasons(w: _Writer, data: DraftInput) -> None:
    reasons = list(data.inspection.loss_reasons)
    if data.usage is not None:
        reasons += [r for r in data.usage.loss_reasons if r not in reasons]
    catalogue = ", ".join([*data.book.passive.lost.reasons, "ignore"])
    w.line("  # " + w.t("reasons", catalogue=catalogue))
    guesses = [match_reason(r, data.book) for r in reasons]
    w.line("  loss_reasons:" + ("" if any(g.decided for g in guesses) else " {}"))
    for reason, guess in zip(reasons, guesses, strict=True):
        used = w.t("lost", n=data.usage.loss_reasons.get(reason, 0)) if data.usage else ""
        if guess.decided:
            w.decided += 1
            target = "ignore" if guess.ignore else guess.target
            w.line(f"    {scalar(reason)}: {target}  # {used}{w.clean(guess.evidence)} "
                   f"({guess.confidence:.2f}){w.alts(guess)}")
        else:
            hint = (w.t("best", target=guess.target, confidence=f"{guess.confidence:.2f}")
                    + w.alts(guess) if guess.target else w.say(guess.evidence))
            w.todo(4, f"mapping.loss_reasons.{reason}",
                   w.t("reason_todo", used=used, hint=hint))
            w.line(f"    # {scalar(reason)}: TODO")


def _activity_types(w: _Writer, data: DraftInput) -> None:
    kinds = book_kinds(data.book)
    w.line("  # " + w.t("kinds", kinds=", ".join(kinds)))
    labels = list(data.inspection.activity_types)
    keys = [split_type(label)[0] for label in labels]
    if data.usage is not None:
        labels += [k for k in data.usage.activity_types if k not in keys]
    rows = []
    for label in labels:
        guess = match_kind(label, kinds)
        used = (w.t("activities", n=data.usage.activity_types.get(guess.source, 0))
                if data.usage else "")
        rows.append((label, guess, used))
    decided = [r for r in rows if r[1].decided and r[1].target != r[1].source]
    w.line("  activity_types:" + ("" if decided else " {}"))
    for label, guess, used in rows:
        if guess.decided and guess.target == guess.source:
            w.decided += 1
            w.line(f"    # {scalar(guess.source)}: {guess.target}  # {used}"
                   + w.t("same_kind"))
        elif guess.decided:
            w.decided += 1
            w.line(f"    {scalar(guess.source)}: {guess.target}  # {used}{_clean(label)}: "
                   f"{w.clean(guess.evidence)} ({guess.confidence:.2f}){w.alts(guess)}")
        else:
            hint = (w.t("best", target=guess.target, confidence=f"{guess.confidence:.2f}")
                    if guess.target else w.say(guess.evidence))
            w.todo(4, f"mapping.activity_types.{guess.source}",
                   w.t("kind_todo", used=used, label=_clean(label), hint=hint))
            w.line(f"    # {scalar(guess.source)}: TODO")


def _fields(w: _Writer, data: DraftInput, entity: str, canonical: Sequence[str],
            required: set[str]) -> None:
    names = list(data.inspection.fields.get(entity, []))
    types: Mapping[str, str] = data.usage.types.get(entity, {}) if data.usage else {}
    filled: Mapping[str, int] = data.usage.filled.get(entity, {}) if data.usage else {}
    values: Mapping[str, Counter[str]] = (data.usage.values.get(entity, {}) if data.usage
                                          else {})
    guesses = match_fields(canonical, names, types)
    decided = [g for g in guesses.values() if g.decided]
    w.line(f"    {entity}:" + ("" if decided else " {}"))
    for key in canonical:
        guess = guesses[key]
        if guess.decided:
            w.decided += 1
            used = w.t("filled", n=filled.get(guess.source, 0)) if data.usage else ""
            w.line(f"      {key}: {scalar(guess.source)}  # {used}{w.clean(guess.evidence)} "
                   f"({guess.confidence:.2f}){w.alts(guess)}")
            shown = values.get(guess.source)
            if shown and key in ("segment", "lead_source", "is_tender", "channel", "region"):
                listed = ", ".join(f"{v} {n}" for v, n in shown.most_common(12))
                w.line(f"      #   {w.t('values')}: {_clean(listed)}")
        elif key in required:
            hint = (w.t("closest", name=guess.source, confidence=f"{guess.confidence:.2f}")
                    if guess.source else w.t("no_similar"))
            w.todo(6, f"mapping.fields.{entity}.{key}", w.t("field_todo", hint=hint))
            w.line(f"      # {key}: TODO")
        else:
            w.line(f"      # {key}: " + w.t("optional", why=w.clean(guess.evidence)))


def _teams(w: _Writer, data: DraftInput) -> None:
    users = data.inspection.users
    teams = teams_from_hierarchy(users)
    names = {str(u.get("id")): str(u.get("name") or u.get("id")) for u in users}
    if not teams:
        listed = ", ".join(f"{names[k]} ({k})" for k in list(names)[:20])
        w.line("  # " + w.t("no_teams"))
        w.line("  # " + w.t("users", users=_clean(listed) or "-"))
        w.line("  teams: []")
        return
    w.line("  teams:")
    for team in teams:
        w.decided += 1
        members = ", ".join(names.get(m, m) for m in team.members)
        w.line(f"    - manager: {scalar(team.manager)}  # {names.get(team.manager, '')}: "
               f"{w.clean(team.evidence)}; members {_clean(members)}")
        w.line("      members: [" + ", ".join(scalar(m) for m in team.members) + "]")


def render(data: DraftInput) -> Draft:
    w = _Writer(data.language)
    book = data.book
    w.line("# " + w.t("header", tenant=data.tenant, day=date.today().isoformat(),
                      plugin=data.plugin, source=f" {data.source}" if data.source else ""))
    w.line("# " + w.t("how"))
    w.line("# " + w.t("todo"))
    w.line(f"plugin: {scalar(data.plugin)}")
    w.line(f"salesbook: {scalar(book.key)}"
           + (f"  # {w.clean(data.book_reason)}" if data.book_reason else ""))
    if not data.timezone_given:
        w.todo(0, "timezone", w.t("timezone_todo", timezone=data.timezone))
    w.line(f"timezone: {scalar(data.timezone)}")
    w.line(f"currency: {scalar(data.currency)}")
    w.line(f"language: {data.language}")
    connection = yaml.safe_dump({"connection": _connection(data)}, allow_unicode=True,
                                sort_keys=False, default_flow_style=False, width=100)
    w.lines.extend(connection.rstrip("\n").split("\n"))
    w.line("mapping:")
    _stages(w, data)
    _loss_reasons(w, data)
    _activity_types(w, data)
    required = {a.evidence.field for a in book.actions.values()
                if a.evidence.field and not a.evidence.activity_types}
    evidence = sorted(book.canonical_fields())
    w.line("  # " + w.t("fields"))
    w.line("  fields:")
    _fields(w, data, "deal", list(dict.fromkeys([*evidence, *DEAL_FIELDS])), required)
    _fields(w, data, "company", list(COMPANY_FIELDS), set())
    _teams(w, data)
    w.line("writeback:")
    w.line("  enabled: false  # " + w.t("writeback"))
    return Draft("\n".join(w.lines) + "\n", w.decided, w.todos)


def pick_salesbook(books: Sequence[SalesBook], inspection: Inspection,
                   usage: Usage | None = None) -> tuple[SalesBook, str]:
    """The Sales Book whose stages the account's stages match best (deal-weighted)."""
    scored = []
    for book in books:
        total = 0.0
        for pipeline in inspection.pipelines:
            stages = list(pipeline.get("stages") or [])
            for stage, guess in zip(stages, match_pipeline(stages, book), strict=True):
                if guess.decided and not guess.ignore:
                    weight = 1.0
                    if usage is not None:
                        weight += usage.stage_count(str(pipeline.get("name")),
                                                    str(stage.get("name")))
                    total += guess.confidence * weight
        scored.append((round(total, 2), book.key, book))
    scored.sort(key=lambda s: (-s[0], s[1]))
    best = scored[0]
    others = ", ".join(f"{k} {s:g}" for s, k, _ in scored[1:])
    return best[2], Text("chosen by `syncd init`: its stages match the account's best (score "
                         "{score}{others})", score=format(best[0], "g"),
                         others="; " + others if others else "")
