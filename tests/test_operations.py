"""The operations package: its public surface, its contract with the workflows, the
documents ``show`` reads, and where Web UI links point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.client import Client

from aios import operations
from aios.config import Settings
from aios.errors import InvalidInput, StackError
from aios.operations import messages
from aios.workers.services import Services
from aios.workflows.attributes import AWAITING_APPROVAL, OUTCOME, PROCESS
from aios.workflows.checks import CHECK_SCHEDULE_ID
from aios.workflows.gates import DECIDE_SIGNAL, PENDING_GATES_QUERY, GateDecision, PendingGate
from aios.workflows.onboarding import OnboardingResult, OnboardingWorkflow
from tests.conftest import ROOT, dev_config
from tests.helpers import start_at_gate

# --- the public surface ----------------------------------------------------------------------


def test_every_public_name_is_exported_once_and_resolves() -> None:
    exported = operations.__all__
    assert len(set(exported)) == len(exported)
    assert set(exported) == set(operations._EXPORTS)
    missing = [name for name in exported if getattr(operations, name, None) is None]
    assert missing == []
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = operations.nonsense


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_package_or_the_gates_loads_no_workflow() -> None:
    package = loaded_after("from aios import operations")
    assert not {m for m in package if m.startswith("aios.operations.")}
    gates = loaded_after("from aios.operations import gates")
    # the gate contract only, never a process with its activities
    assert {m for m in gates if m.startswith("aios.workflows")} <= {
        "aios.workflows",
        "aios.workflows.contract",
    }
    assert not {"openai", "qdrant_client", "fpdf", "caldav", "psycopg"} & gates


# --- the contract the light modules keep with the workflows ----------------------------------


def test_the_operator_side_contract_equals_the_workflows() -> None:
    assert messages.Decision is GateDecision  # one model, in workflows.contract
    assert messages.WaitingGate is PendingGate
    assert messages.DECIDE_SIGNAL == DECIDE_SIGNAL
    assert messages.PENDING_GATES_QUERY == PENDING_GATES_QUERY
    assert messages.CHECK_SCHEDULE_ID == CHECK_SCHEDULE_ID
    assert messages.PROCESS.name == PROCESS.name
    assert messages.OUTCOME.name == OUTCOME.name
    assert messages.AWAITING_APPROVAL.name == AWAITING_APPROVAL.name
    query = workflow._QueryDefinition.from_fn(OnboardingWorkflow.progress)
    assert query is not None and query.name == messages.PROGRESS_QUERY


@pytest.mark.parametrize(
    "payload",
    [
        {"decision": "approve", "approver": "sam"},
        {"decision": "edit", "approver": "sam", "edits": {"subject": "Hello"}},
        {"decision": "edit", "approver": "sam"},
        {"decision": "approve", "approver": "sam", "edits": {"body": "x"}},
        {"decision": "edit", "approver": "sam", "edits": {"subject": "two\nlines"}},
        {"decision": "approve", "approver": "s\x00m"},
        {"decision": "approve", "approver": "sam", "extra": 1},
    ],
)
def test_decision_accepts_and_refuses_what_the_signal_does(payload: dict[str, Any]) -> None:
    def verdict(model: type[BaseModel]) -> str:
        try:
            return model.model_validate(payload).model_dump_json()
        except ValidationError as exc:
            return f"refused: {sorted(str(e['loc']) for e in exc.errors())}"

    assert verdict(messages.Decision) == verdict(GateDecision)


# --- links ------------------------------------------------------------------------------------


def test_web_ui_links_follow_the_dev_config_unless_the_url_is_set(tmp_path: Path) -> None:
    config = dev_config(ui_port=18999)
    path = tmp_path / "temporal-dev.yaml"
    path.write_text(yaml.safe_dump(config.model_dump()))
    derived = Settings(temporal_dev_config=path, _env_file=None)
    assert derived.temporal_ui_url is None
    url = operations.web_ui_url(derived, "onboarding/acme-ltd", "run-1")
    assert url == (
        "http://localhost:18999/namespaces/aios/workflows/onboarding%2Facme-ltd/run-1/history"
    )
    explicit = derived.model_copy(update={"temporal_ui_url": "https://temporal.example/"})
    assert operations.web_ui_url(explicit, "billing/x").startswith(
        "https://temporal.example/namespaces/aios/workflows/billing%2Fx"
    )
    unreadable = derived.model_copy(update={"temporal_dev_config": tmp_path / "missing.yaml"})
    assert operations.web_ui_url(unreadable, "a/b").startswith("http://localhost:8233/")


# --- operations that open their own connections ----------------------------------------------


def test_a_bad_month_is_refused_before_any_connection() -> None:
    nowhere = Settings(database_url="postgresql://u:pw@127.0.0.1:9/none", _env_file=None)
    with pytest.raises(InvalidInput, match="month: '2026-13'"):
        operations.month_costs(nowhere, "2026-13")


def test_a_session_opens_the_store_once_and_closes_it(settings: Settings) -> None:
    with operations.Session(settings) as session:
        store = session.store()
        assert session.store() is store
        assert store.clients.get("nobody-here") is None
    with pytest.raises(Exception, match="closed"):
        store.clients.get("nobody-here")


def test_without_a_database_the_error_says_how_to_start_one(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, _env_file=None)
    with pytest.raises(StackError, match="aios dev up"), operations.Session(settings) as session:
        session.store()


# --- documents behind a run ---------------------------------------------------------------------


async def test_show_reads_the_welcome_at_the_gate_and_after_the_run(
    client: Client, settings: Settings, services: Services, worker
) -> None:
    handle, gate, _, _ = await start_at_gate(client, settings)
    shown = await operations.show(settings, handle.id)
    assert (shown.status, shown.gate and shown.gate.gate) == ("running", "welcome")
    doc = shown.document
    assert isinstance(doc, operations.WelcomeDocument)
    draft = services.store.drafts.get(doc.draft_id)
    assert draft is not None and draft.workflow_id == handle.id
    assert (doc.subject, doc.body, doc.plan) == (draft.subject, draft.body, draft.plan)
    assert doc.subject in gate.summary
    assert doc.drafted_by == "template (offline rules, no model)"

    edit = messages.Decision(decision="edit", approver="sam", edits={"subject": "A better subject"})
    await operations.decide(client, handle.id, edit)
    result = await handle.result()
    assert isinstance(result, OnboardingResult) and result.status == "completed"
    after = await operations.show(settings, handle.id)
    assert (after.status, after.outcome, after.gate) == ("completed", "completed", None)
    assert isinstance(after.document, operations.WelcomeDocument)
    assert (after.document.version, after.document.subject) == (2, "A better subject")
    assert after.document.edited_by == "sam"


async def test_show_refuses_unknown_and_unshowable_references(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        await operations.show(settings, "onboarding/nobody-at-all-here")
    with pytest.raises(InvalidInput, match="give a workflow id"):
        await operations.show(settings, "nobody")
    with pytest.raises(InvalidInput, match="INV-999999 does not exist"):
        await operations.show(settings, "INV-999999")
    with pytest.raises(InvalidInput, match="shows onboarding, proposal and billing"):
        await operations.show(settings, "checks/scheduled")
