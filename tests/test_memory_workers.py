"""Several `aios worker` processes on the embedded stack: one owns the memory shard and serves
the memory task queue, the others run everything else; a standby takes memory over when the
owner stops; `aios memory search|show` read through the owner."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client

from aios import operations
from aios.config import Settings
from aios.memory import MemoryQuery, shard_owner
from aios.operations.memory import lookup_memory
from aios.workflows.gates import GateDecision
from aios.workflows.timeouts import memory_task_queue
from tests.conftest import ROOT, RecordingSmtp, subprocess_env
from tests.helpers import start_at_gate

Line = dict[str, Any]
# What onboarding runs on the memory queue: its recalls and corrections in one step, then the
# summary it remembers.
MEMORY_ACTIVITIES = {"recall_for_draft", "remember"}


class WorkerProcess:
    """An `aios worker` subprocess whose JSON log lines (stderr) are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[Line] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aios.cli",
            "worker",
            *args,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while raw := await self.proc.stderr.readline():
            async with self._changed:
                self.lines.append(json.loads(raw))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, wanted: Callable[[Line], bool], timeout: float = 90) -> Line:
        """The first log line that is ``wanted`` (waiting for it), or fail with what came."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for line in self.lines:
                    if wanted(line):
                        return line
                assert not self._reader.done(), f"worker {self.pid} ended; it wrote {self.lines}"
                await self._changed.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 90)
        await self._reader
        return code

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


def event(text: str) -> Callable[[Line], bool]:
    return lambda line: text in str(line.get("event", ""))


def owns_memory(line: Line) -> bool:
    return str(line.get("event", "")).startswith("memory worker started")


def stands_by(line: Line) -> bool:
    return str(line.get("event", "")).startswith("memory: the shard")


async def served_by(client: Client, workflow_id: str) -> dict[str, set[str]]:
    """Which worker identities ran which activities of a run, and on which task queues."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    ran: dict[str, set[str]] = {}
    for e in history.events:
        if e.HasField("activity_task_started_event_attributes"):
            started = e.activity_task_started_event_attributes
            task = scheduled[started.scheduled_event_id]
            ran.setdefault(task.activity_type.name, set()).add(
                f"{started.identity} on {task.task_queue.name}"
            )
    return ran


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", "memory", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


async def test_two_workers_side_by_side_one_serves_memory_and_a_standby_takes_it_over(
    client: Client, settings: Settings, smtp: RecordingSmtp, tmp_path: Path
) -> None:
    # Corrections on (a fresh shard: none learnt yet), as a user runs it: onboarding then
    # recalls them too, on the memory queue.
    s = settings.model_copy(
        update={"qdrant_path": tmp_path / "qdrant", "agent_apply_corrections": True}
    )
    env = subprocess_env(s, AIOS_QDRANT_PATH=str(tmp_path / "qdrant"), COLUMNS="250")
    workers = [await WorkerProcess.start(env), await WorkerProcess.start(env)]
    try:
        for w in workers:
            await w.wait_for(event("worker started"))
        found = await asyncio.wait_for(
            asyncio.gather(
                *(w.wait_for(lambda x: owns_memory(x) or stands_by(x)) for w in workers)
            ),
            90,
        )
        [owner] = [w for w, line in zip(workers, found, strict=True) if owns_memory(line)]
        [standby] = [w for w in workers if w is not owner]
        said = await standby.wait_for(stands_by)
        assert said["owner_pid"] == owner.pid == shard_owner(s)
        assert said["task_queue"] == memory_task_queue(s.task_queue)

        # Onboarding recalls memory and corrections and remembers: all on the memory queue,
        # run by the owner only.
        handle, _, key, email = await start_at_gate(client, s, timeout=90)
        await operations.decide(
            client, handle.id, GateDecision(decision="approve", approver="pat", comment="ok")
        )
        result = await handle.result()
        assert result.status == "completed" and result.memory_id
        assert len(smtp.to(email)) == 1
        ran = await served_by(client, handle.id)
        for name in MEMORY_ACTIVITIES:
            assert {r.split("@")[0] for r in ran[name]} == {str(owner.pid)}, ran
            assert all(r.endswith(f" on {s.task_queue}-memory") for r in ran[name]), ran
        others = {
            r.split(" on ")[1] for n, rs in ran.items() if n not in MEMORY_ACTIVITIES for r in rs
        }
        assert others == {s.task_queue}

        # A reader outside the owner goes through Temporal: MemoryLookupWorkflow on the memory
        # queue, answered from the owner's open shard.
        view = await lookup_memory(s, MemoryQuery(point_id=result.memory_id), client=client)
        assert view.record is not None and view.backend == "qdrant-edge"
        assert view.record.provenance.source_workflow_id == handle.id
        assert view.record.provenance.entity == f"client:{key}"

        shown = cli(env, "show", result.memory_id)
        assert shown.returncode == 0, shown.stderr
        assert result.memory_id in shown.stdout
        assert f"entity client:{key}, kind onboarding_summary, version 1 of 1" in shown.stdout
        assert handle.id in shown.stdout
        found_json = cli(env, "search", "onboarded website", "--client", key, "--json")
        assert found_json.returncode == 0, found_json.stderr
        hits = json.loads(found_json.stdout)["hits"]
        assert [h["id"] for h in hits] == [result.memory_id]
        assert hits[0]["provenance"]["source_run_id"] == handle.result_run_id
        table = cli(env, "search", "onboarded website", "--client", key)
        assert table.returncode == 0 and result.memory_id in table.stdout, table.stderr
        assert "aios memory show <id>" in table.stdout
        bad = cli(env, "show", "not-an-id")
        assert bad.returncode == 1
        assert "point_id: 'not-an-id' is not a memory id" in bad.stderr

        # The owner stops; the standby takes the shard and serves memory from then on.
        assert await owner.stop() == 0
        await standby.wait_for(owns_memory, timeout=60)
        assert shard_owner(s) == standby.pid
        again = await lookup_memory(s, MemoryQuery(point_id=result.memory_id), client=client)
        assert again.record == view.record
        assert await standby.stop() == 0
        assert shard_owner(s) is None
    finally:
        for w in workers:
            w.kill()


async def test_aios_worker_count_runs_processes_side_by_side_one_owning_memory(
    settings: Settings, tmp_path: Path
) -> None:
    env = subprocess_env(settings, AIOS_QDRANT_PATH=str(tmp_path / "qdrant"))
    pool = await WorkerProcess.start(env, "--count", "2")
    try:
        started = [await pool.wait_for(event(f"worker process {i} started")) for i in (0, 1)]
        children = {line["pid"] for line in started}
        await pool.wait_for(owns_memory)
        await pool.wait_for(stands_by)
        s = settings.model_copy(update={"qdrant_path": tmp_path / "qdrant"})
        assert shard_owner(s) in children
        assert await pool.stop() == 0
        await pool.wait_for(event("worker processes stopped"))
        assert shard_owner(s) is None  # every child ended and let go of the shard
    finally:
        pool.kill()
