"""Every duration setting takes seconds (``90``) or ISO 8601 (``PT36H``), as README says; a
bad value is an error naming the setting that never repeats the value."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import get_args

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from aios.cli.app import app
from aios.config import Duration, Settings

DURATIONS = [
    "gate_remind_after",
    "gate_expire_after",
    "proposal_follow_up_every",
    "proposal_expire_after",
    "billing_payment_terms",
    "billing_remind_every",
    "synthetic_check_every",
    "worker_shutdown_grace",
    "imap_poll_every",
]


def test_every_timedelta_setting_is_a_duration() -> None:
    """A new timedelta setting must use ``Duration`` and be added to DURATIONS (and so to
    every test below)."""
    timedeltas = [
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is timedelta or timedelta in get_args(field.annotation)
    ]
    assert sorted(timedeltas) == sorted(DURATIONS)
    wrap = get_args(Duration)[1]
    for name in DURATIONS:
        assert wrap in Settings.model_fields[name].metadata, name


@pytest.fixture(autouse=True)
def no_aios_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("AIOS_")]:
        monkeypatch.delenv(key)


def from_env(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> Settings:
    monkeypatch.setenv(f"AIOS_{name.upper()}", value)
    return Settings(_env_file=None)


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90", timedelta(seconds=90)),
        (" 3600 ", timedelta(hours=1)),
        ("5400.5", timedelta(seconds=5400.5)),
        ("PT36H", timedelta(hours=36)),
        ("P7D", timedelta(days=7)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
    ],
)
def test_seconds_and_iso_8601_both_work(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: timedelta
) -> None:
    assert getattr(from_env(monkeypatch, name, value), name) == expected


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", ["soon", "90 minutes", "sk-live-0123456789abcdef", "-90", "P1Q"])
def test_a_bad_duration_names_the_setting_and_not_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    with pytest.raises(ValidationError) as info:
        from_env(monkeypatch, name, value)
    [error] = info.value.errors()
    assert error["loc"] == (name,)
    assert "seconds (90) or ISO 8601" in error["msg"] or "negative" in error["msg"]
    assert value.strip() not in str(info.value)


def test_the_command_line_names_the_setting_once() -> None:
    secretish = "sk-live-0123456789abcdef"
    result = CliRunner().invoke(app, ["inbox"], env={"AIOS_GATE_REMIND_AFTER": secretish})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid settings: AIOS_GATE_REMIND_AFTER: not a")
    assert "seconds (90) or ISO 8601 (PT36H, P7D)" in result.stderr
    assert secretish not in result.stderr + result.stdout
    assert "Value error" not in result.stderr


def test_ninety_seconds_is_accepted_by_the_command_line() -> None:
    """README's example: AIOS_GATE_REMIND_AFTER=90 (refused before as a malformed day)."""
    result = CliRunner().invoke(
        app,
        ["costs", "--month", "2026-13"],  # settings load first; the month is then refused
        env={"AIOS_GATE_REMIND_AFTER": "90", "AIOS_GATE_EXPIRE_AFTER": "PT36H"},
    )
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("error: month: '2026-13'"), result.stderr
