"""A real IMAP server for the inbound-mail tests: Debian's Dovecot on a free loopback port.

Each ``Dovecot`` gets a throwaway folder with a generated config, a password file and the mail
(Maildir). It runs as the current user; as root, the mail itself belongs to the ``dovecot``
system user (Dovecot refuses mail access as UID 0). No TLS: loopback only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if not os.path.exists(DOVECOT) or not os.path.exists("/usr/lib/dovecot/imap"):
        return "Dovecot is not installed (./run.sh test installs Debian's dovecot-imapd as root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dovecot:
    """One Dovecot with one mailbox account ``user``/``password``."""

    def __init__(self, user: str = "aios", password: str = "inbound-secret") -> None:
        self.user, self.password = user, password
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aios-dovecot-"))
        os.chmod(self.root, 0o755)
        self.config = self.root / "dovecot.conf"

    def _accounts(self) -> tuple[str, str, int, int]:
        """(internal user, login user, mail uid, mail gid) for this process's user."""
        me = pwd.getpwuid(os.getuid())
        if os.getuid() != 0:
            return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid
        mail = pwd.getpwnam("dovecot")
        return "dovecot", "dovenull", mail.pw_uid, mail.pw_gid

    def start(self) -> Dovecot:
        internal, login, uid, gid = self._accounts()
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, uid, gid)
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        self.config.write_text(
            f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {pwd.getpwnam(internal).pw_name if os.getuid() == 0 else internal}
default_login_user = {login}
first_valid_uid = {min(uid, 1)}
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"""
        )
        # Dovecot goes to the background holding its parent's stdout and stderr: no pipes.
        subprocess.run(
            [DOVECOT, "-c", str(self.config)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    log = (self.root / "dovecot.log").read_text(errors="replace")
                    raise RuntimeError(f"dovecot did not start: {log[-2000:]}") from None
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        subprocess.run(
            [DOVECOT, "-c", str(self.config), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def imap(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def deliver(self, message: bytes, folder: str = "INBOX") -> None:
        """Put ``message`` into ``folder`` as a new, unseen message (IMAP APPEND)."""
        with self.imap() as imap:
            imap.append(folder, message, flags=())

    def unseen(self, folder: str = "INBOX") -> int:
        with self.imap() as imap:
            imap.select_folder(folder, readonly=True)
            return len(imap.search(["UNSEEN"]))
