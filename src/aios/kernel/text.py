"""Text that enters AiOs from outside, normalised once at the boundary.

PostgreSQL cannot store NUL (``U+0000``) in text or JSON, UTF-8 cannot carry a lone surrogate
(``U+D800``-``U+DFFF``, which JSON's ``\\ud800`` escapes produce), a line break in a name or
subject would split an email header, and an invisible bidi override (``U+202E``) or zero-width
space makes text read other than it is. Every model that takes text from a person, a signal, a
model or a connector uses one of the annotated types below, so such text never reaches the
kernel, an email or a prompt.

Two rules, by what the text is:

- **Refused** (``Line``, ``Text``): text a person typed or sent in a signal (names, approvers,
  comments, payment references, counter-offer notes). The error names the field, the character
  and its position, and the sender can send it again; nothing is silently changed in a decision.
- **Cleaned** (``PastedText``): long free text pasted from somewhere else (client notes, a
  proposal's scope) or written by a model. Refusing it would lose the whole text for an
  invisible character, so control characters other than newline and tab are removed, ``\\r\\n``
  becomes ``\\n``, and the rest is kept as it was.

In both, Unicode is normalised to NFC and surrounding whitespace is stripped; lengths are capped
by the field (``Field(max_length=...)``), checked after cleaning.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

__all__ = [
    "Line",
    "PastedText",
    "Text",
    "clean_pasted",
    "find_unsafe",
    "refuse_unsafe",
]

_MULTILINE_OK = frozenset("\n\t")
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    if ch == "\x00":
        name = "NUL"
    elif 0xD800 <= ord(ch) <= 0xDFFF:
        name = "lone surrogate"
    elif not name:
        name = "control character"
    return f"U+{ord(ch):04X} ({name})"


def find_unsafe(value: str, *, multiline: bool) -> str | None:
    """Why ``value`` cannot be taken as typed text, or ``None`` when it can.

    Control characters (``Cc``) and lone surrogates (``Cs``) cannot be stored or sent; invisible
    format characters (``Cf``: bidi overrides, zero-width spaces) could make text read other
    than it is, except the zero-width joiners that emoji and several scripts need. In one line,
    line and paragraph separators are refused too.
    """
    for i, ch in enumerate(value):
        if multiline and ch in _MULTILINE_OK:
            continue
        category = unicodedata.category(ch)
        if ch in "\r\n" or category in ("Zl", "Zp"):
            if not multiline:
                return f"contains a line break at position {i}; it must be one line"
            continue
        if category in ("Cc", "Cs"):
            return (
                f"contains {_describe(ch)} at position {i}: "
                "control characters cannot be stored or sent"
            )
        if category == "Cf" and ch not in _JOINERS:
            return (
                f"contains {_describe(ch)} at position {i}: "
                "invisible control characters could disguise the text"
            )
    return None


def refuse_unsafe(value: str, *, multiline: bool) -> str:
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n") if multiline else value)
    problem = find_unsafe(value, multiline=multiline)
    if problem:
        raise ValueError(problem)
    return value.strip()


def clean_pasted(value: str) -> str:
    """Drop control characters (except newline and tab), lone surrogates and invisible format
    characters (except joiners); keep the rest."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(
        ch
        for ch in value
        if ch in _MULTILINE_OK
        or ch in _JOINERS
        or unicodedata.category(ch) not in ("Cc", "Cs", "Cf")
    )
    return unicodedata.normalize("NFC", kept).strip()


def _line(value: object) -> object:
    return refuse_unsafe(value, multiline=False) if isinstance(value, str) else value


def _text(value: object) -> object:
    return refuse_unsafe(value, multiline=True) if isinstance(value, str) else value


def _pasted(value: object) -> object:
    return clean_pasted(value) if isinstance(value, str) else value


# One line of text a person typed: no line breaks or control characters (refused).
Line = Annotated[str, BeforeValidator(_line)]
# Several lines a person typed: newline and tab allowed, other control characters refused.
Text = Annotated[str, BeforeValidator(_text)]
# Text pasted from elsewhere or written by a model: control characters removed.
PastedText = Annotated[str, BeforeValidator(_pasted), AfterValidator(str.strip)]
