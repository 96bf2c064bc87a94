"""Three builds of one workflow type, as successive deploys would ship it (see
``tests/test_upgrades.py``).

- ``BuildOne``: a step, the gate ``go``, a step.
- ``BuildTwo``: adds a step before the gate, behind ``workflow.patched`` as AiOs does for every
  change to a process's commands, and changes the step after the gate.
- ``BuildTwoUnpatched``: the same change without ``workflow.patched``: the deploy that breaks
  runs already waiting at the gate.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from aios.kernel.policy import GatePolicy
    from aios.workflows.gates import GateHost

NAME = "VersionedProcess"
AUDIT_PATCH = "versioned-audit"


@activity.defn(name="versioned_note")
async def note(text: str) -> str:
    return text


async def _note(text: str) -> str:
    return await workflow.execute_activity(note, text, start_to_close_timeout=timedelta(seconds=30))


class _Base(GateHost):
    async def _gate(self) -> str:
        outcome = await self.wait_for_decision(
            gate="go",
            title="Go ahead?",
            summary="A versioned process waits for the operator.",
            policy=GatePolicy(),
            editable_fields=[],
        )
        return outcome.status


@workflow.defn(name=NAME)
class BuildOne(_Base):
    @workflow.run
    async def run(self, label: str) -> list[str]:
        done = [await _note("intake")]
        done.append(await self._gate())
        done.append(await _note("send"))
        return done


@workflow.defn(name=NAME)
class BuildTwo(_Base):
    @workflow.run
    async def run(self, label: str) -> list[str]:
        done = [await _note("intake")]
        if workflow.patched(AUDIT_PATCH):
            done.append(await _note("audit"))
        done.append(await self._gate())
        done.append(await _note("send v2"))
        return done


@workflow.defn(name=NAME)
class BuildTwoUnpatched(_Base):
    @workflow.run
    async def run(self, label: str) -> list[str]:
        done = [await _note("intake")]
        done.append(await _note("audit"))
        done.append(await self._gate())
        done.append(await _note("send v2"))
        return done
