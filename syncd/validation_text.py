"""A pydantic validation error said in the reader's language (tenant, daemon and Sales Book files).

pydantic writes its messages in English only. Each error carries a ``type`` and its values
(``ctx``); for the types a configuration file meets, the English template below is exactly
pydantic's message, so ``str()`` of the result (logs, JSON, tests, docs) reads as before,
and ``Text.say("ru")`` says it from the ``cli`` catalogue. A message a validator of ours
raised as ``ValueError(Text(...))`` is said the same way. A type not listed here (or a
pydantic release whose wording differs) keeps pydantic's English text: never a wrong text.
"""

from __future__ import annotations

from typing import Any

from syncd.i18n import N_, Text

#: error type -> pydantic's English template (``{name}``: a value of the error's ``ctx``).
TEMPLATES: dict[str, str] = {
    "missing": N_("Field required"),
    "extra_forbidden": N_("Extra inputs are not permitted"),
    "string_type": N_("Input should be a valid string"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_(
        "Input should be a valid integer, got a number with a fractional part"),
    "float_type": N_("Input should be a valid number"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "bool_type": N_("Input should be a valid boolean"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "list_type": N_("Input should be a valid list"),
    "dict_type": N_("Input should be a valid dictionary"),
    "model_attributes_type": N_(
        "Input should be a valid dictionary or object to extract fields from"),
    "literal_error": N_("Input should be {expected}"),
    "enum": N_("Input should be {expected}"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
}


def _alternatives(expected: str) -> Text | str:
    """pydantic's ``'a', 'b' or 'c'`` with its ``or`` said in the reader's language."""
    first, sep, last = expected.rpartition(" or ")
    return Text("{first} or {last}", first=first, last=last) if sep else expected


def validation_text(item: dict[str, Any]) -> str:
    """One item of ``ValidationError.errors()`` as a ``Text`` when it can be said in Russian
    too, else pydantic's English message."""
    message = str(item.get("msg", ""))
    ctx = item.get("ctx") or {}
    if item.get("type") in ("value_error", "assertion_error"):
        error = ctx.get("error")
        said = error.args[0] if isinstance(error, Exception) and error.args else None
        return said if isinstance(said, Text) else message.removeprefix("Value error, ")
    template = TEMPLATES.get(str(item.get("type")))
    if template is None:
        return message
    values = {key: _alternatives(value) if key == "expected" and isinstance(value, str)
              else value for key, value in ctx.items()}
    try:
        text = Text(template, **values)
    except (KeyError, IndexError, ValueError):
        return message
    return text if text == message else message  # another wording: pydantic's, unchanged
