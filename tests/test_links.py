"""Signed links in the operator's gate emails: what opens, what is refused and why."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from itsdangerous import URLSafeSerializer
from pydantic import SecretStr

from aios.config import Settings
from aios.serve.links import (
    KEY_FILE,
    LINK_SALT,
    GateLinks,
    LinkClaim,
    LinkProblem,
    read,
    read_with_key,
    sign,
    signing_key,
)

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
KEY = b"k" * 40


def claim(action: str = "approve", expires: datetime = NOW + timedelta(days=7)) -> LinkClaim:
    return LinkClaim.model_validate(
        {
            "workflow_id": "onboarding/acme-ltd",
            "run_id": "0195f4c2-1111-7000-8000-000000000001",
            "gate_key": "gate/welcome",
            "action": action,
            "expires_at": expires,
        }
    )


def settings_with(tmp_path: Path, key: str | None = None) -> Settings:
    return Settings(
        state_dir=tmp_path,
        serve_secret_key=SecretStr(key) if key else None,
        _env_file=None,
    )


def test_a_signed_link_reads_back_as_the_same_claim() -> None:
    for action in ("approve", "reject", "open"):
        token = sign(claim(action), KEY)
        assert read_with_key(token, KEY, NOW) == claim(action)
        assert "/" not in token and "?" not in token  # fits a URL path as is


def test_a_changed_character_is_refused_as_tampered() -> None:
    token = sign(claim(), KEY)
    i = len(token) // 2
    altered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    for bad in (altered, token[:-3], "", "nonsense", token + "x"):
        with pytest.raises(LinkProblem) as err:
            read_with_key(bad, KEY, NOW)
        assert err.value.kind == "tampered"
        assert "\n" not in str(err.value) and "decides nothing" in str(err.value)


def test_a_link_past_its_gates_expiry_is_refused_as_expired() -> None:
    token = sign(claim(expires=NOW + timedelta(minutes=5)), KEY)
    assert read_with_key(token, KEY, NOW + timedelta(minutes=4)).action == "approve"
    with pytest.raises(LinkProblem) as err:
        read_with_key(token, KEY, NOW + timedelta(minutes=5))
    assert err.value.kind == "expired"
    assert str(err.value) == (
        "This link expired with its gate at 2026-11-30 09:05 UTC; it decides nothing."
    )


def test_a_link_signed_with_another_key_is_refused(tmp_path: Path) -> None:
    token = sign(claim(), b"another key entirely, forty bytes long..")
    with pytest.raises(LinkProblem) as err:
        read(token, settings_with(tmp_path, "the-console-key-" + "x" * 20), NOW)
    assert err.value.kind == "tampered"


def test_the_decision_is_bound_changing_it_in_the_payload_fails() -> None:
    token = sign(claim("reject"), KEY)
    body, _, signature = token.rpartition(".")
    serializer = URLSafeSerializer(KEY, salt=LINK_SALT)
    ok, payload = serializer.loads_unsafe(token)
    assert ok and payload["a"] == "reject"
    payload["a"] = "approve"
    forged_body = serializer.dump_payload(payload).decode()
    assert forged_body != body
    with pytest.raises(LinkProblem) as err:
        read_with_key(f"{forged_body}.{signature}", KEY, NOW)
    assert err.value.kind == "tampered"


def test_a_signed_payload_that_is_not_a_claim_is_refused_as_tampered() -> None:
    signer = URLSafeSerializer(KEY, salt=LINK_SALT)
    for payload in ({"w": "x"}, [1, 2], {"w": "a", "r": "b", "g": "c", "a": "pay", "x": 9}):
        with pytest.raises(LinkProblem) as err:
            read_with_key(str(signer.dumps(payload)), KEY, NOW)
        assert err.value.kind == "tampered"


def test_the_key_is_created_once_private_and_shared(tmp_path: Path) -> None:
    s = settings_with(tmp_path)
    key = signing_key(s)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32
    assert signing_key(settings_with(tmp_path)) == key  # a second process reads the same key
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]
    # The configured key wins over the file.
    assert signing_key(settings_with(tmp_path, "k" * 32)) == b"k" * 32


def test_gate_links_point_at_the_console_and_read_back(tmp_path: Path) -> None:
    s = settings_with(tmp_path).model_copy(update={"serve_url": "https://ops.example/console"})
    links = GateLinks.from_settings(s)
    urls = links.for_gate("onboarding/acme-ltd", "run-1", "gate/welcome#2", NOW + timedelta(1))
    assert set(urls) == {"approve", "reject", "open"}
    for action, url in urls.items():
        assert url.startswith("https://ops.example/console/l/")
        got = read(url.rsplit("/", 1)[1], s, NOW)
        assert (got.action, got.gate_key, got.run_id) == (action, "gate/welcome#2", "run-1")
    assert "key" not in repr(links).lower().replace("gatelinks", "")
