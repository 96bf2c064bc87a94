"""What an agent learns from the operator's edits at a gate: field-level replacements.

When the operator edits a draft at a gate, each edited field is compared with the draft the
agent wrote sentence by sentence, a line break also ending one (``replacements_from_edit``).
Every block of sentences the operator changed becomes one replacement, ``before`` ->
``after``:

- sentences replaced or deleted: the old ones -> the new ones (empty when deleted);
- sentences inserted: anchored to the unchanged one before them (or after, at the very top),
  so the anchor -> the anchor plus the new sentences.

The client's name in either text is stored as ``{client}``, so "Hello Acme Ltd," learnt from
one client reads "Hello Beta GmbH," for the next. ``apply_corrections`` applies the
replacements of the recalled corrections, most similar client first, to the fields of a new
draft: a replacement applies when its ``before`` text occurs in that field exactly (after the
new client's name is put in); one that does not occur is skipped, so a correction never
touches a draft it does not fit. A field a more similar correction already changed keeps that
change. Hosted model agents get the same corrections in their prompt, fenced, with their ids,
and say which ones they applied.
"""

from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, Field

from aios.agents.base import fence

__all__ = [
    "CLIENT_PLACEHOLDER",
    "CorrectionHint",
    "Replacement",
    "apply_corrections",
    "correction_lines",
    "replacements_from_edit",
    "unknown_correction_ids",
]

CLIENT_PLACEHOLDER = "{client}"
# A unit of comparison: a sentence (up to ". ", "! ", "? " and the spaces after) or the rest of
# a line with its line break. Joined, the units are the text.
_UNIT = re.compile(r"[^\n]*?(?:[.!?] +|\n)|[^\n]+")
MAX_REPLACEMENT_CHARS = 2000


class Replacement(BaseModel):
    """In ``field``, the text ``before`` becomes ``after`` (``{client}``: the client's name)."""

    field: str
    before: str = Field(max_length=MAX_REPLACEMENT_CHARS)
    after: str = Field(max_length=MAX_REPLACEMENT_CHARS)


class CorrectionHint(BaseModel):
    """A recalled correction as an agent sees it."""

    id: str
    client_name: str = ""
    score: float = 0.0
    approver: str = ""
    replacements: list[Replacement] = Field(default_factory=list)


def _generic(text: str, client_name: str) -> str:
    return text.replace(client_name, CLIENT_PLACEHOLDER) if client_name else text


def _lines(text: str) -> str:
    """``text`` ending in exactly one newline: a field's last line compares like the others
    (a gate edit arrives stripped)."""
    return text.rstrip() + "\n" if text.strip() else ""


def _field_replacements(field: str, before: str, after: str, client: str) -> list[Replacement]:
    old, new = _UNIT.findall(_lines(before)), _UNIT.findall(_lines(after))
    found: list[Replacement] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "insert":
            if i1 > 0:  # anchor on the sentence before
                was, now = old[i1 - 1], old[i1 - 1] + "".join(new[j1:j2])
            elif old:  # at the top: anchor on the first sentence
                was, now = old[0], "".join(new[j1:j2]) + old[0]
            else:
                continue
        else:  # replace, delete
            was, now = "".join(old[i1:i2]), "".join(new[j1:j2])
        if not was.strip() or len(was) > MAX_REPLACEMENT_CHARS or len(now) > MAX_REPLACEMENT_CHARS:
            continue
        found.append(
            Replacement(field=field, before=_generic(was, client), after=_generic(now, client))
        )
    return found


def replacements_from_edit(
    before: dict[str, str], after: dict[str, str], *, client_name: str
) -> list[Replacement]:
    """The replacements that turn ``before`` into ``after``, field by field (only fields in
    ``after`` whose text changed)."""
    found: list[Replacement] = []
    for field in sorted(after):
        old, new = before.get(field, ""), after[field]
        if new.strip() and old != new:
            found.extend(_field_replacements(field, old, new, client_name))
    return found


def apply_corrections(
    fields: dict[str, str], corrections: list[CorrectionHint], *, client_name: str
) -> tuple[dict[str, str], list[str]]:
    """``fields`` with the corrections' replacements applied, and the ids of the corrections
    that changed something (in the order given: most relevant first)."""
    out = dict(fields)
    touched: set[str] = set()
    applied: list[str] = []
    for correction in corrections:
        changed_here: set[str] = set()
        for r in correction.replacements:
            if r.field not in out or r.field in touched:
                continue
            was = r.before.replace(CLIENT_PLACEHOLDER, client_name)
            now = r.after.replace(CLIENT_PLACEHOLDER, client_name)
            text = out[r.field]
            work = _lines(text)
            if not was.strip() or was not in work:
                continue
            work = work.replace(was, now, 1)
            if work.strip():  # a correction never empties a field
                out[r.field] = work if text.endswith("\n") else work.rstrip("\n")
                changed_here.add(r.field)
        if changed_here:
            applied.append(correction.id)
            touched |= changed_here
    return out, applied


def correction_lines(corrections: list[CorrectionHint]) -> str:
    """Corrections for a prompt: id, then each replacement with both texts fenced (an edit may
    quote a client)."""
    lines = []
    for c in corrections:
        lines.append(f"{c.id} (for a client similar to this one, score {c.score:.2f}):")
        lines.extend(
            f"  in {r.field}: replace {fence(r.before, limit=1000)} "
            f"with {fence(r.after, limit=1000)}"
            for r in c.replacements
        )
    return "\n".join(lines) or "(none)"


def unknown_correction_ids(used: list[str], given: list[CorrectionHint]) -> str | None:
    known = {c.id for c in given}
    unknown = [i for i in used if i not in known]
    if unknown:
        return f"corrections_used: {unknown[0]!r} is not one of the corrections given"
    return None
