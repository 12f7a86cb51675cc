"""Guess what a CRM's words mean in the Sales Book: stages, loss reasons, activity kinds,
fields and export columns. Pure functions; every guess says why and how sure it is.

A ``Guess`` with ``confidence >= DECIDED`` is written into the drafted tenant file (with its
evidence and alternatives in a comment); a weaker one is left as a TODO for the consultant.
Scores: the same words 1.0, a transliteration 0.9, a known synonym 0.9, a synonym inside a
longer title 0.7, similar spelling (difflib ratio >= 0.8) up to 0.8, the CRM's own stage
semantics (won/lost/failure) 0.95, the position between two decided stages 0.6.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncd.i18n import Text
from syncd.onboarding.vocabulary import (
    BITRIX_TYPE_IDS,
    COLUMN_SYNONYMS,
    FIELD_SYNONYMS,
    IGNORE_REASON_WORDS,
    INBOX_WORDS,
    KIND_SYNONYMS,
    LOST_WORDS,
    REASON_SYNONYMS,
    STAGE_SYNONYMS,
    TAB_SYNONYMS,
    WON_WORDS,
    normalise,
    transliterate,
)
from syncd.salesbook import SalesBook

#: A guess at least this sure is written as a mapping; below it is a TODO.
DECIDED = 0.6
#: Marks a guess whose target is "leave out of the audit" (YAML ``null``/``ignore``).
IGNORE = None


@dataclass(frozen=True)
class Guess:
    """One CRM word's most likely Sales Book meaning (``target``; None = ignore)."""

    source: str
    target: str | None
    confidence: float
    evidence: str
    alternatives: tuple[tuple[str, float], ...] = ()
    ignore: bool = False  # target None on purpose (closed status, duplicates)

    @property
    def decided(self) -> bool:
        return self.confidence >= DECIDED and (self.target is not None or self.ignore)


def _phrases_score(text: str, phrases: Iterable[str]) -> tuple[float, str]:
    """How well ``text`` says one of ``phrases`` (0..1) and why."""
    words = normalise(text)
    latin = transliterate(text)
    best, why = 0.0, ""
    for phrase in phrases:
        norm = normalise(phrase)
        if not norm or not words:
            continue
        if words == norm:
            return 1.0, Text("same words as {phrase!r}", phrase=phrase)
        lat = transliterate(phrase)
        reason: str  # a Text, or "" for no reason
        if latin == lat:
            score, reason = 0.9, Text("transliteration of {phrase!r}", phrase=phrase)
        elif len(norm) >= 3 and re.search(rf"(^| ){re.escape(norm)}( |$)", words):
            score, reason = 0.7, Text("contains {phrase!r}", phrase=phrase)
        else:
            ratio = max(difflib.SequenceMatcher(None, words, norm).ratio(),
                        difflib.SequenceMatcher(None, latin, lat).ratio())
            score, reason = (ratio * 0.8, Text("spelled like {phrase!r}", phrase=phrase)
                             ) if ratio >= 0.8 else (0.0, "")
        if score > best:
            best, why = score, reason
    return best, why


def _rank(text: str, candidates: Mapping[str, tuple[Sequence[str], Sequence[str]]],
          ) -> list[tuple[str, float, str]]:
    """``candidates``: target -> (own names scored 1.0, synonyms scored at most 0.9)."""
    ranked = []
    for target, (own, synonyms) in candidates.items():
        score, why = _phrases_score(text, own)
        if score < 1.0:
            syn_score, syn_why = _phrases_score(text, synonyms)
            syn_score = min(syn_score, 0.9)
            if syn_score > score:
                score, why = syn_score, (Text("synonym: {why}", why=syn_why)
                                         if syn_score >= 0.9 else syn_why)
        if score > 0:
            ranked.append((target, round(score, 2), why))
    ranked.sort(key=lambda r: (-r[1], r[0]))
    return ranked


def _guess(source: str, ranked: list[tuple[str, float, str]], what: str) -> Guess:
    if not ranked:
        return Guess(source, None, 0.0, Text("no {what} matched", what=what))
    target, score, why = ranked[0]
    alternatives = tuple((t, s) for t, s, _ in ranked[1:4])
    if alternatives and alternatives[0][1] >= score - 0.05 and score < 1.0:
        score = round(score * 0.8, 2)  # two meanings as likely: not sure
        why = Text("{why}; as close to {other!r}", why=why, other=alternatives[0][0])
    return Guess(source, target, score, why, alternatives)


# -- stages ----------------------------------------------------------------------------------
def stage_candidates(book: SalesBook) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    candidates: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        s.key: ((s.key.replace("_", " "), s.title), STAGE_SYNONYMS.get(s.key, ()))
        for s in book.stages}
    candidates["deferred"] = (("deferred",), STAGE_SYNONYMS["deferred"])
    return candidates


def closed_semantics(name: str, semantics: str | None) -> str | None:
    """``won``/``lost`` when the CRM says (or the name says) the stage is a closed one."""
    if semantics in ("success", "S", "won"):
        return "won"
    if semantics in ("failure", "F", "lost"):
        return "lost"
    words = normalise(name)
    if words in {normalise(w) for w in WON_WORDS}:
        return "won"
    if words in {normalise(w) for w in LOST_WORDS}:
        return "lost"
    if words.startswith("closed ") and words.endswith((" won", " lost")):
        return words.rsplit(" ", 1)[1]
    return None


def match_stage(name: str, book: SalesBook, semantics: str | None = None) -> Guess:
    outcome = closed_semantics(name, semantics)
    if outcome is not None:
        crm_says = bool(semantics and semantics != "in progress")
        by = Text("the CRM's stage semantics") if crm_says else Text("its name")
        return Guess(name, IGNORE, 0.95 if crm_says else 0.85,
                     Text("a closed ({outcome}) stage by {by}: the outcome is the deal's "
                          "status, and a closed deal is audited at the stage it was closed "
                          "from", outcome=outcome, by=by),
                     ignore=True)
    if normalise(name) in {normalise(w) for w in INBOX_WORDS}:
        return Guess(name, IGNORE, 0.7, Text("the CRM's inbox of unsorted requests, not a "
                                             "sales stage (amoCRM's first status)"),
                     ignore=True)
    return _guess(name, _rank(name, stage_candidates(book)), Text("Sales Book stage"))


def match_pipeline(stages: Sequence[Mapping[str, Any]], book: SalesBook) -> list[Guess]:
    """Guesses for one pipeline's stages (in the CRM's order). An undecided stage between
    two decided ones whose Sales Book stages leave exactly one stage out takes that one."""
    guesses = [match_stage(str(s.get("name") or ""), book, s.get("semantics"))
               for s in stages]
    order = [s.key for s in book.stages]
    for i, guess in enumerate(guesses):
        if guess.decided:
            continue
        before = next((g for g in reversed(guesses[:i])
                       if g.decided and g.target in order), None)
        after = next((g for g in guesses[i + 1:] if g.decided and g.target in order), None)
        if before is None or after is None:
            continue
        low, high = order.index(before.target or ""), order.index(after.target or "")
        if high - low == 2:
            target = order[low + 1]
            guesses[i] = Guess(guess.source, target, DECIDED,
                               Text("stage order: between {before!r} ({before_key}) and "
                                    "{after!r} ({after_key})", before=before.source,
                                    before_key=before.target, after=after.source,
                                    after_key=after.target),
                               guess.alternatives)
    return guesses


# -- loss reasons ----------------------------------------------------------------------------
def match_reason(text: str, book: SalesBook) -> Guess:
    words = normalise(text)
    for word in IGNORE_REASON_WORDS:
        if words == normalise(word) or normalise(word) in words.split():
            return Guess(text, IGNORE, 0.8,
                         Text("says {word!r}: not a real deal, left out", word=word),
                         ignore=True)
    candidates = {key: ((key.replace("_", " "), reason.title), REASON_SYNONYMS.get(key, ()))
                  for key, reason in book.passive.lost.reasons.items()}
    return _guess(text, _rank(text, candidates), Text("catalogue reason"))


# -- activity kinds --------------------------------------------------------------------------
def split_type(label: str) -> tuple[str, str]:
    """``"task_1 (Follow-up)"`` -> ``("task_1", "Follow-up")``; a bare key -> (key, "")."""
    found = re.fullmatch(r"\s*(.+?)\s+\((.*)\)\s*", label)
    return (found.group(1), found.group(2)) if found else (label.strip(), "")


def book_kinds(book: SalesBook) -> list[str]:
    kinds = {k for a in book.actions.values() for k in a.evidence.activity_types}
    kinds |= set(book.passive.deferred.reminder_activity_types)
    kinds |= set(book.passive.won.followup_activity_types)
    return sorted(kinds | {"note"})


def match_kind(label: str, kinds: Sequence[str]) -> Guess:
    key, name = split_type(label)
    if key in kinds:
        return Guess(key, key, 1.0, Text("the same key as the canonical kind"))
    parts = [p for p in re.split(r"[:|/]", key) if p]
    base = BITRIX_TYPE_IDS.get(parts[0]) if parts and parts[0].isdigit() else None
    candidates = {k: ((k,), KIND_SYNONYMS.get(k, ())) for k in kinds}
    ranked: list[tuple[str, float, str]] = []
    for text in filter(None, [name, *parts[1:], key]):
        for target, score, why in _rank(text, candidates):
            ranked.append((target, score, Text("{text!r}: {why}", text=text, why=why)))
    if base is not None and base in kinds:
        ranked.append((base, 0.75, Text("Bitrix24 TYPE_ID {id} is {kind}", id=parts[0],
                                        kind=base)))
    best: dict[str, tuple[str, float, str]] = {}
    for item in ranked:
        if item[0] not in best or item[1] > best[item[0]][1]:
            best[item[0]] = item
    ordered = sorted(best.values(), key=lambda r: (-r[1], r[0]))
    return _guess(key, ordered, Text("activity kind"))


# -- fields ----------------------------------------------------------------------------------
def type_family(crm_type: str | None) -> str | None:
    if not crm_type:
        return None
    text = crm_type.casefold()
    if any(w in text for w in ("double", "monetary", "money", "int", "number", "numeric",
                               "float", "decimal", "price")):
        return "number"
    if "date" in text or "birthday" in text or "time" in text:
        return "date"
    if any(w in text for w in ("enum", "set", "select", "list", "bool", "checkbox", "radio")):
        return "enum"
    return "text"


def match_fields(canonical: Sequence[str], names: Sequence[str],
                 types: Mapping[str, str] | None = None) -> dict[str, Guess]:
    """Each canonical key's best CRM field (a field serves one key at most), by name first
    and type second (a type that cannot hold the value costs a third of the score)."""
    types = types or {}
    scored: list[tuple[float, str, str, str, list[tuple[str, float]]]] = []
    per_key: dict[str, list[tuple[str, float]]] = {}
    for key in canonical:
        phrases, families = FIELD_SYNONYMS.get(key, ((key.replace("_", " "),), ()))
        own = (key.replace("_", " "),)
        for name in names:
            score, why = _phrases_score(name, own)
            if score < 1.0:
                syn, syn_why = _phrases_score(name, phrases)
                if min(syn, 0.9) > score:
                    score, why = min(syn, 0.9), syn_why
            if score <= 0:
                continue
            family = type_family(types.get(name))
            if family and families and family not in families:
                score, why = score * 0.66, Text("{why}; but its type is {type}", why=why,
                                                type=types.get(name))
            elif family and families:
                why = Text("{why}; type {type} fits", why=why, type=types.get(name))
            per_key.setdefault(key, []).append((name, round(score, 2)))
            scored.append((round(score, 2), key, name, why, []))
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    taken_keys: set[str] = set()
    taken_names: set[str] = set()
    guesses: dict[str, Guess] = {}
    for score, key, name, why, _ in scored:
        if key in taken_keys or name in taken_names:
            continue
        taken_keys.add(key)
        taken_names.add(name)
        alternatives = tuple(sorted(((n, s) for n, s in per_key[key] if n != name),
                                    key=lambda a: -a[1])[:3])
        guesses[key] = Guess(name, key, score, why, alternatives)
    for key in canonical:
        if key not in guesses:
            guesses[key] = Guess("", key, 0.0, Text("no CRM field matched"))
    return guesses


# -- export columns --------------------------------------------------------------------------
def match_tab(title: str) -> str | None:
    ranked = _rank(title, {e: ((e.replace("_", " "),), s) for e, s in TAB_SYNONYMS.items()})
    return ranked[0][0] if ranked and ranked[0][1] >= DECIDED else None


def match_columns(entity: str, headers: Sequence[str]) -> dict[str, Guess]:
    """Standard column -> the header that holds it (each header used once)."""
    synonyms = COLUMN_SYNONYMS.get(entity, {})
    scored = []
    for column, phrases in synonyms.items():
        for header in headers:
            score, why = _phrases_score(header, (column.replace("_", " "), *phrases))
            if score >= DECIDED:
                scored.append((score, column, header, why))
    scored.sort(key=lambda s: (-s[0], list(synonyms).index(s[1])))
    taken: set[str] = set()
    found: dict[str, Guess] = {}
    for score, column, header, why in scored:
        if column in found or header in taken:
            continue
        taken.add(header)
        found[column] = Guess(header, column, score, why)
    return found


# -- people ----------------------------------------------------------------------------------
@dataclass
class TeamGuess:
    manager: str
    members: list[str] = field(default_factory=list)
    evidence: str = ""


def teams_from_hierarchy(users: Sequence[Mapping[str, Any]]) -> list[TeamGuess]:
    """One team per user who is some active user's manager (Bitrix24 department heads)."""
    names = {str(u.get("id")): str(u.get("name") or u.get("id")) for u in users}
    teams: dict[str, TeamGuess] = {}
    for user in users:
        manager = user.get("manager_id")
        if not manager or str(manager) == str(user.get("id")) or user.get("active") is False:
            continue
        team = teams.setdefault(str(manager), TeamGuess(
            str(manager), evidence=Text("the CRM's hierarchy: {name} heads their department",
                                        name=names.get(str(manager), manager))))
        team.members.append(str(user.get("id")))
    return list(teams.values())
