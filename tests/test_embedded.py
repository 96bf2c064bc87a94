"""The newcomer's path: `aios dev up` with the embedded PostgreSQL, then `aios demo`.

Runs the real commands as subprocesses, on free ports and a fresh state folder, with no
AIOS_DATABASE_URL, so the stack under test is entirely the one `aios dev up` starts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, dev_config, free_port


def stack_env(state: Path, config_path: Path, grpc: int, ui: int, smtp: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    env.update(
        AIOS_STATE_DIR=str(state),
        AIOS_TEMPORAL_DEV_CONFIG=str(config_path),
        AIOS_TEMPORAL_ADDRESS=f"127.0.0.1:{grpc}",
        AIOS_TEMPORAL_UI_URL=f"http://localhost:{ui}",
        AIOS_SMTP_PORT=str(smtp),
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
        assert again.stdout.count("running") == 3

        demo = aios(env, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "Onboarding completed for Northwind Studio" in demo.stdout
        found = re.search(r"Email:\s+(\S+)", demo.stdout)
        assert found, demo.stdout
        stored = Path(found.group(1)).read_text()
        assert "Subject: Welcome aboard, Northwind Studio" in stored
        assert 'filename="kickoff.ics"' in stored
        assert str(state / "mail" / "new") in found.group(1)

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
        assert status.stdout.count("stopped") == 3
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", config.grpc_port)) != 0

        # Data survives down/up: the run and its events are still there.
        assert aios(env, "dev", "up").returncode == 0
        st = aios(env, "status", "onboarding/northwind-studio")
        assert st.returncode == 0, st.stderr
        assert "completed" in st.stdout and "email.sent" in st.stdout
    finally:
        aios(env, "dev", "down")
