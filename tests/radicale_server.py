"""A real Radicale CalDAV server for tests, run as a subprocess on a free local port.

Storage is Radicale's own filesystem backend in a folder the caller gives; one user logs in
through an htpasswd file (plain entries, which Radicale reads without extra packages), and a
failed login answers at once (``delay = 0``) so tests of wrong passwords stay fast.

    with RadicaleServer(tmp_path) as server:
        DAVClient(server.url, username=server.username, password=server.password)
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["RadicaleServer", "free_port"]

_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RadicaleServer:
    """``python -m radicale`` with its own config, storage, user and log under ``root``."""

    def __init__(self, root: Path, *, username: str = "operator") -> None:
        self.root = root
        self.username = username
        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def storage(self) -> Path:
        return self.root / "collections"

    @property
    def log(self) -> Path:
        return self.root / "radicale.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        users = self.root / "users"
        users.write_text(f"{self.username}:{self.password}\n")
        config = self.root / "config"
        config.write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {users}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "[rights]\n"
            "type = owner_only\n"
            "[storage]\n"
            f"filesystem_folder = {self.storage}\n"
            "[web]\n"
            "type = none\n"
            "[logging]\n"
            "level = warning\n"
        )
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "radicale", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_until_answering()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT)

    def __enter__(self) -> RadicaleServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_answering(self) -> None:
        """Poll until any HTTP answer comes back (a 401 counts); fail early if Radicale exits."""
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"radicale exited during start-up:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answered, with an error status: good enough
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"radicale did not answer on {self.url} within {_START_TIMEOUT:g} s:\n"
                        f"{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
