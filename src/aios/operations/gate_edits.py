"""The gate page's Edit form: its fields, the edits a form makes, the checks the workflow
applies to them, and each edit as a unified diff."""

from __future__ import annotations

import difflib
from decimal import Decimal

from pydantic import ValidationError

from aios.kernel.money import currency_exponent
from aios.operations.console_models import (
    FIELD_LABELS,
    FORM_ERROR,
    MULTILINE_FIELDS,
    EditableField,
    FieldDiff,
    GateView,
    PostGateDocument,
    ProposalGateDocument,
    WelcomeGateDocument,
)
from aios.operations.messages import Decision

__all__ = ["check_edits", "edit_diff", "editable_fields", "form_edits"]


# --- the Edit form ------------------------------------------------------------------------------


def editable_fields(view: GateView) -> list[EditableField]:
    doc = view.document
    values: dict[str, str] = {}
    if isinstance(doc, WelcomeGateDocument):
        values = {"subject": doc.subject, "body": doc.body}
    elif isinstance(doc, PostGateDocument):
        values = {"title": doc.title, "body": doc.markdown}
    elif isinstance(doc, ProposalGateDocument):
        values = {
            "total": _major(doc.total_minor, doc.currency),
            "discount_pct": f"{doc.discount_pct:f}",
            "terms": doc.terms,
        }
    return [
        EditableField(
            name=name,
            label=FIELD_LABELS.get(name, name.replace("_", " ").capitalize()),
            value=values.get(name, ""),
            multiline=name in MULTILINE_FIELDS,
        )
        for name in view.gate.editable_fields
    ]


def _major(minor: int, currency: str) -> str:
    return f"{Decimal(minor).scaleb(-currency_exponent(currency)):f}"


def form_edits(view: GateView, form: dict[str, str]) -> dict[str, str]:
    """The edits an Edit form makes: the gate's editable fields whose value changed (line
    breaks as ``\\n``, surrounding whitespace ignored). Other keys of ``form`` are ignored."""
    current = {f.name: f.value for f in view.fields}
    edits: dict[str, str] = {}
    for name in view.gate.editable_fields:
        if name not in form:
            continue
        value = form[name].replace("\r\n", "\n").replace("\r", "\n")
        if value.strip() != current.get(name, "").strip():
            edits[name] = value
    return edits


def check_edits(view: GateView, edits: dict[str, str]) -> dict[str, str]:
    """What the workflow would refuse in ``edits`` at this gate: field -> problem (``FORM_ERROR``
    for the edit as a whole); empty when the edit would be applied.

    The same checks as the run: the ``decide`` payload (``Decision``, the fields and rules of
    ``GateDecision``), the gate's editable fields, and the gate's own check of edited values
    (a proposal's ``_parse_edits``). One more for the welcome email: a field left empty is
    refused, since the run would keep the current text rather than send an empty one."""
    errors: dict[str, str] = {}
    if view.gate.status != "waiting":
        return {FORM_ERROR: f"gate {view.gate.gate!r} is not waiting ({view.gate.status})"}
    try:
        Decision(decision="edit", approver="operator", edits=edits)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            message = str(error["msg"]).removeprefix("Value error, ")
            if len(loc) >= 2 and loc[0] == "edits":
                _put(errors, loc[1], message)
            else:
                _put_message(errors, message)
        return errors
    allowed = view.gate.editable_fields
    for name in sorted(set(edits) - set(allowed)):
        _put(errors, name, f"not an editable field (editable: {', '.join(allowed) or 'none'})")
    if errors:
        return errors
    if view.gate.gate == "welcome":  # the run keeps a field left empty: say so, not a diff
        for name, value in edits.items():
            if not value.strip():
                _put(errors, name, "must not be empty (the run would keep the current text)")
    problem = _gate_check(view, edits)
    if problem:
        _put_message(errors, problem)
    return errors


def _gate_check(view: GateView, edits: dict[str, str]) -> str | None:
    doc = view.document
    if view.gate.gate == "proposal" and isinstance(doc, ProposalGateDocument):
        from aios.activities.models import ProposalVersionRef
        from aios.workflows.proposal import _parse_edits

        version = ProposalVersionRef(
            version_id=doc.version_id,
            version=doc.version,
            source=doc.source,
            currency=doc.currency,
            subtotal_minor=doc.subtotal_minor,
            discount_pct=doc.discount_pct,
            total_minor=doc.total_minor,
            line_items=[],
        )
        return _parse_edits(version, edits)[1]
    return None


def _put(errors: dict[str, str], field: str, message: str) -> None:
    errors.setdefault(field, message)


def _put_message(errors: dict[str, str], message: str) -> None:
    """``"edits.total: not a number"`` -> ``errors["total"]``; anything else is the form's."""
    head, sep, rest = message.partition(": ")
    if sep and head.startswith("edits.") and head != "edits.":
        _put(errors, head.removeprefix("edits."), rest)
    else:
        _put(errors, FORM_ERROR, rest if sep and head == "edits" else message)


def edit_diff(view: GateView, edits: dict[str, str]) -> list[FieldDiff]:
    """Each edited field as a unified diff against the value the gate shows now."""
    current = {f.name: f for f in view.fields}
    diffs = []
    for name, after in edits.items():
        field = current.get(name)
        before = field.value if field else ""
        if before == after:
            continue
        lines = list(
            difflib.unified_diff(
                before.splitlines(),
                after.splitlines(),
                fromfile=f"{name} (now)",
                tofile=f"{name} (edited)",
                lineterm="",
            )
        )
        diffs.append(
            FieldDiff(
                field=name,
                label=field.label if field else name,
                before=before,
                after=after,
                lines=lines,
            )
        )
    return diffs
