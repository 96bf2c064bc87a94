"""The newcomer's path: `aios dev up` with the embedded PostgreSQL, then `aios demo`.

Runs the real commands as subprocesses, on free ports and a fresh state folder, with no
AIOS_DATABASE_URL, so the stack under test is entirely the one `aios dev up` starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.conftest import ROOT, dev_config, free_port

T = TypeVar("T")


def stack_env(state: Path, config_path: Path, grpc: int, ui: int, smtp: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    env.update(
        AIOS_STATE_DIR=str(state),
        AIOS_TEMPORAL_DEV_CONFIG=str(config_path),
        AIOS_TEMPORAL_ADDRESS=f"127.0.0.1:{grpc}",
        AIOS_TEMPORAL_UI_URL=f"http://localhost:{ui}",
        AIOS_SMTP_PORT=str(smtp),
        AIOS_SERVE_PORT=str(free_port()),
        COLUMNS="200",
    )
    return env


def aios(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_dev_up_and_demo_on_the_embedded_stack(tmp_path: Path) -> None:
    config = dev_config()
    config_path = tmp_path / "temporal-dev.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump()))
    state = tmp_path / "state"
    env = stack_env(state, config_path, config.grpc_port, config.ui_port, free_port())
    try:
        up = aios(env, "dev", "up")
        assert up.returncode == 0, up.stderr
        again = aios(env, "dev", "up")  # harmless the second time
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("running") == 4  # temporal, postgres, smtp, console
        for schedule in ("aios-synthetic-checks", "aios-weekly-review", "aios-content-planning"):
            assert f"schedule {schedule} created" in up.stdout, up.stdout
            assert f"schedule {schedule} updated" in again.stdout, again.stdout  # not a second
        assert "aios-mail-poll" not in again.stdout  # no mailbox (AIOS_IMAP_HOST): no poll
        console = f"http://127.0.0.1:{env['AIOS_SERVE_PORT']}"
        assert console in again.stdout
        with urllib.request.urlopen(f"{console}/signin") as page:
            assert page.status == 200 and b"Sign in" in page.read()

        changed = aios(env, "policy", "set", "gate_remind_after", "PT12H", "--reason", "sooner")
        assert changed.returncode == 0, changed.stderr  # version 2: the settings seeded 1
        demo = aios(env, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "Onboarding completed for Northwind Studio" in demo.stdout
        found = re.search(r"Email:\s+(\S+)", demo.stdout)
        assert found, demo.stdout
        stored = Path(found.group(1)).read_text()
        assert "Subject: Welcome aboard, Northwind Studio" in stored
        assert "To: hello@northwind-studio.example" in stored  # from the name, not hard-coded
        assert 'filename="kickoff.ics"' in stored
        assert str(state / "mail" / "new") in found.group(1)
        assert f"Console:  {console} (sign in" in demo.stdout
        # The demo's run pinned the latest policy version at its start, as `aios onboard` does.
        shown = aios(env, "status", "onboarding/northwind-studio", "--json")
        assert shown.returncode == 0, shown.stderr
        events = {e["kind"]: e["payload"] for e in json.loads(shown.stdout)["events"]}
        assert events["gate.requested"]["policy_version"] == 2

        # Another stack on the same ports gets a clear message, not a hang or a traceback.
        other = stack_env(
            tmp_path / "other", config_path, config.grpc_port, config.ui_port, free_port()
        )
        busy = aios(other, "dev", "up")
        assert busy.returncode == 1
        assert f"port {config.grpc_port}" in busy.stderr and "already in use" in busy.stderr

        down = aios(env, "dev", "down")
        assert down.returncode == 0 and "temporal" in down.stdout and "postgres" in down.stdout
        status = aios(env, "dev", "status")
        assert status.stdout.count("stopped") == 5  # temporal, postgres, smtp, console, worker
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", config.grpc_port)) != 0

        # Data survives down/up: the run and its events are still there.
        assert aios(env, "dev", "up").returncode == 0
        st = aios(env, "status", "onboarding/northwind-studio")
        assert st.returncode == 0, st.stderr
        assert "completed" in st.stdout and "email.sent" in st.stdout

        supervised_worker(env, state)
    finally:
        aios(env, "dev", "down")


def worker_state(state: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state / "run" / "worker.json").read_text()))
    except (OSError, ValueError):
        return {}


def worker_lines(state: Path, logger: str | None = None, event: str | None = None) -> list[Any]:
    lines = [json.loads(line) for line in (state / "logs" / "worker.log").read_text().splitlines()]
    return [
        line
        for line in lines
        if logger in (None, line["logger"]) and event in (None, line["event"])
    ]


def until(check: Callable[[], T | None], timeout: float = 90) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f}s")


def supervised_worker(env: dict[str, str], state: Path) -> None:
    """`aios dev up --worker` runs one worker that does the work, comes back after a crash,
    and goes with `aios dev down`."""
    up = aios(env, "dev", "up", "--worker")
    assert up.returncode == 0, up.stderr
    first = until(lambda: worker_state(state).get("worker_pid"))
    onboard = aios(env, "onboard", "--name", "Contoso Ltd", "--email", "it@contoso.example")
    assert onboard.returncode == 0, onboard.stderr
    until(lambda: "welcome" in aios(env, "inbox").stdout or None)  # the worker drafted it
    shown = aios(env, "show", "onboarding/contoso-ltd")
    assert shown.returncode == 0 and "Subject: Welcome aboard, Contoso Ltd" in shown.stdout

    os.kill(first, signal.SIGKILL)
    second = until(
        lambda: worker_state(state).get("restarts") == 1 and worker_state(state).get("worker_pid")
    )
    assert second != first
    status = aios(env, "dev", "status")
    assert f"worker pid {second}, 1 restart(s)" in status.stdout, status.stdout
    # The schedules `aios dev up` made, with what each starts and its next run.
    for schedule, starts in [
        ("aios-synthetic-checks", "SyntheticCheckWorkflow"),
        ("aios-weekly-review", "ReviewDigestWorkflow"),
        ("aios-content-planning", "ContentWorkflow"),
    ]:
        [row] = [r for r in status.stdout.splitlines() if schedule in r]
        assert starts in row and "active" in row and " UTC" in row, status.stdout
    until(lambda: len(worker_lines(state, "aios.worker", "worker started")) == 2 or None)
    # Right after a crash the server may first offer the gate query to the dead worker's
    # sticky queue: the approval is then sent unconfirmed, and applied all the same.
    approve = aios(env, "approve", "onboarding/contoso-ltd", "--approver", "sam")
    assert approve.returncode == 0, approve.stderr
    assert "gate 'welcome'" in approve.stdout or "unconfirmed" in approve.stdout
    until(lambda: "completed" in aios(env, "status", "onboarding/contoso-ltd").stdout or None)

    lines = worker_lines(state)  # every line of the worker's log is JSON
    assert [line["approver"] for line in lines if line["logger"] == "aios.gates"] == ["sam"]
    restarts = [line for line in lines if line["logger"] == "aios.supervisor"]
    assert "was killed by SIGKILL; restarting in 1 s" in restarts[1]["event"]

    supervisor = int((state / "run" / "worker.pid").read_text())
    down = aios(env, "dev", "down")
    assert down.returncode == 0
    assert down.stdout.startswith("Stopped: worker, console, smtp, temporal")
    for pid in (supervisor, second):
        assert (
            not Path(f"/proc/{pid}").exists()
            or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
        )
    assert "not supervised" in aios(env, "dev", "status").stdout
