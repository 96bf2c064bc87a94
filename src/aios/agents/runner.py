"""Running an agent: tiers, repair, confidence, budget and the cost ledger.

``AgentRunner.run(agent, request, ctx)`` does, for each tier of the agent in order (cheap
first):

1. Look the call up in the ledger by its key (``<step key>/<tier>/<try>``). A reply already
   paid for is reused, never bought again: an activity retried after a crash or a 429 replays
   the tiers it already went through at no cost.
2. Otherwise estimate the call's cost from the prompt and the tier's price and check the
   monthly caps (``AgentPolicy``). Over a cap the call is not made: the outcome holds with
   ``Hold(kind="budget")`` and the estimate, for the operator to approve (``ctx.approved_calls``).
3. Call the model with the envelope's JSON schema and write the ledger row (tokens, USD,
   confidence, outcome, the reply).
4. A reply that is not valid JSON, does not fit the schema or fails the agent's own check gets
   one repair try on the same tier (the model sees what was wrong); if that fails too, or the
   confidence is below ``min_confidence``, the runner escalates to the next tier. A reply the
   provider could not even read (``UnusableReply``: a 200 whose body is not UTF-8, not JSON,
   not a completion) counts the same: an ``invalid`` attempt in the ledger, with the reason.

A provider refusal (content filter, invalid request, auth) holds with ``Hold(kind="review")``.
When every tier is spent the outcome holds for review too: ``fallback="best"`` if some tier gave
a valid but unsure answer (the operator may accept it), else ``fallback="template"``. The
operator's choice comes back as ``ctx.use``: ``"template"`` runs the deterministic template
provider, ``"best"`` takes the most confident valid answer. Without a hosted provider the
runner always uses the template provider, the offline default.

Kill switches: with a ``pause`` (``aios.kernel.pause.PauseGate``), the runner waits while
``all``, ``agent:<name>`` or the run's ``process:<name>`` is paused, before the agent runs
(any provider, the template one too) and again before every model call it has to pay for (a
repair, the next tier). Waiting costs no retry and no money.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from aios.agents.base import (
    Agent,
    AgentResult,
    Attempt,
    Envelope,
    Usage,
    envelope_schema,
    estimate_tokens,
)
from aios.errors import InvalidInput, ModelRefused, UnusableReply
from aios.kernel.models import ModelCall
from aios.kernel.policy import AgentPolicy
from aios.kernel.pricing import ModelPrice, Tier

if TYPE_CHECKING:  # the provider loads the openai SDK (slow): only where a model is called
    from aios.agents.providers import ChatModel

__all__ = [
    "AgentOutcome",
    "AgentRunner",
    "CallContext",
    "CallLedger",
    "Hold",
    "ModelPrice",
    "PauseCheck",
    "Tier",
]

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)

REPAIR_PROMPT = (
    "Your reply could not be used: {problem}. Reply again with only the JSON object described, "
    "with that fixed."
)


@dataclass(frozen=True)
class CallContext:
    key: str  # the step's idempotency key
    workflow_id: str
    run_id: str
    process: str
    approved_calls: frozenset[str] = frozenset()
    use: Literal["model", "template", "best"] = "model"
    use_reason: str = ""


@dataclass(frozen=True)
class Hold:
    """Why a step needs the operator before it can go on."""

    kind: Literal["budget", "review"]
    reason: str
    call_key: str = ""
    estimate_usd: float = 0.0
    fallback: Literal["template", "best"] = "template"


@dataclass(frozen=True)
class AgentOutcome(Generic[OutT]):
    result: AgentResult[OutT] | None
    hold: Hold | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def cost_usd(self) -> float:
        return round(sum(a.cost_usd for a in self.attempts), 6)


class PauseCheck(Protocol):
    """Waits while a switch covering the step is paused (``aios.kernel.pause.PauseGate``)."""

    def hold(self, labels: Sequence[str], what: str) -> float: ...


class CallLedger(Protocol):
    """The cost ledger of model calls (``kernel.stores.CostLedger``)."""

    def get(self, call_key: str) -> ModelCall | None: ...
    def record(self, call: ModelCall) -> ModelCall: ...
    def spend(self, since: datetime, *, agent: str | None = None) -> Decimal: ...


@dataclass
class _Valid(Generic[OutT]):
    output: OutT
    confidence: float
    attempt: Attempt
    usage: Usage


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class AgentRunner:
    def __init__(
        self,
        ledger: CallLedger,
        *,
        chat: ChatModel | None = None,
        tiers: dict[str, Tier] | None = None,
        agent_tiers: dict[str, list[str]] | None = None,
        policy: AgentPolicy | None = None,
        max_output_tokens: int = 2000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        pause: PauseCheck | None = None,
    ) -> None:
        self._ledger = ledger
        self._pause = pause
        self._chat = chat
        self._tiers = tiers or {}
        self._agent_tiers = agent_tiers or {}
        self._policy = policy or AgentPolicy()
        self._max_output = max_output_tokens
        self._clock = clock

    @property
    def provider(self) -> str:
        return self._chat.name if self._chat is not None else "template"

    def tiers_for(self, agent: Agent[Any, Any]) -> list[Tier]:
        names = self._agent_tiers.get(agent.name, list(agent.tiers))
        missing = [n for n in names if n not in self._tiers]
        if missing:
            raise InvalidInput(f"agent {agent.name}: no model configured for tier {missing[0]!r}")
        return [self._tiers[n] for n in names]

    def run(
        self,
        agent: Agent[InT, OutT],
        request: InT,
        ctx: CallContext,
        *,
        beat: Callable[[], None] = lambda: None,
    ) -> AgentOutcome[OutT]:
        self._hold(agent)
        if self._chat is None or ctx.use == "template":
            return self._template(agent, request, ctx)
        return self._tiered(self._chat, agent, request, ctx, beat)

    # --- the template provider -------------------------------------------------------------

    def _template(self, agent: Agent[InT, OutT], request: InT, ctx: CallContext) -> AgentOutcome:
        result = agent.run(request)
        reason = ctx.use_reason if ctx.use == "template" else "offline default"
        attempt = Attempt(
            call_key=f"{ctx.key}/template",
            tier="template",
            model=result.model,
            outcome="template",
            cost_usd=0.0,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            confidence=result.confidence,
            reason=reason,
        )
        self._record(agent, ctx, attempt, provider="template", content=None)
        return AgentOutcome(
            result=AgentResult(
                output=result.output,
                model=result.model,
                usage=result.usage,
                cost_usd=0.0,
                confidence=result.confidence,
                memory_ids=result.memory_ids,
                prompt_version=agent.prompt_version,
                provider="template",
                tier="template",
                attempts=[attempt],
            ),
            attempts=[attempt],
        )

    # --- hosted tiers ----------------------------------------------------------------------

    def _tiered(
        self,
        chat: ChatModel,
        agent: Agent[InT, OutT],
        request: InT,
        ctx: CallContext,
        beat: Callable[[], None],
    ) -> AgentOutcome[OutT]:
        attempts: list[Attempt] = []
        best: _Valid[OutT] | None = None
        last_problem = ""
        schema = envelope_schema(agent.output_model)
        prompt = agent.render_prompt(request)
        for tier in self.tiers_for(agent):
            messages = [
                {"role": "system", "content": agent.system_prompt},
                {"role": "user", "content": prompt},
            ]
            for tried in range(2):  # the first try and one repair
                key = f"{ctx.key}/{tier.name}/{tried}"
                beat()
                stored = self._ledger.get(key)
                reused = stored is not None
                if stored is None:
                    estimate = tier.price.cost(
                        estimate_tokens("".join(m["content"] for m in messages)), self._max_output
                    )
                    over = key in ctx.approved_calls
                    if not over:
                        problem = self._budget_problem(agent.name, estimate)
                        if problem:
                            return AgentOutcome(
                                result=None,
                                hold=Hold(
                                    kind="budget",
                                    reason=f"budget exceeded: {problem}; approve spending of "
                                    f"~${estimate:.4f} on {agent.name} ({tier.model})?",
                                    call_key=key,
                                    estimate_usd=float(estimate),
                                ),
                                attempts=attempts,
                            )
                    self._hold(agent)
                    stored = self._call(
                        chat, agent, request, ctx, tier, key, messages, schema, over
                    )
                attempt, valid, problem = self._judge(agent, request, tier, stored, reused)
                attempts.append(attempt)
                if stored.outcome == "refused":
                    return AgentOutcome(
                        result=None,
                        hold=Hold(kind="review", reason=stored.reason, call_key=key),
                        attempts=attempts,
                    )
                if valid is not None:
                    if best is None or valid.confidence > best.confidence:
                        best = valid
                    if attempt.outcome == "accepted":
                        return self._done(agent, request, valid, attempts, chat.name, tier)
                    last_problem = attempt.reason
                    break  # confident enough it is not: escalate, a repair will not help
                last_problem = problem
                if tried == 0:
                    messages = [
                        *messages,
                        {"role": "assistant", "content": stored.content or ""},
                        {"role": "user", "content": REPAIR_PROMPT.format(problem=problem)},
                    ]
        if best is not None:
            if ctx.use == "best":
                return self._done(agent, request, best, attempts, chat.name, None)
            return AgentOutcome(
                result=None,
                hold=Hold(
                    kind="review",
                    reason=f"no tier was confident enough: the best answer ({best.attempt.model}"
                    f", confidence {best.confidence:.2f}) is below "
                    f"{self._policy.min_confidence:.2f}",
                    fallback="best",
                ),
                attempts=attempts,
            )
        return AgentOutcome(
            result=None,
            hold=Hold(kind="review", reason=f"no tier gave usable output: {last_problem}"),
            attempts=attempts,
        )

    def _hold(self, agent: Agent[Any, Any]) -> None:
        if self._pause is not None:
            self._pause.hold([f"agent:{agent.name}"], f"{agent.name} agent")

    def _budget_problem(self, agent: str, estimate: Decimal) -> str | None:
        since = month_start(self._clock())
        return self._policy.budget_problem(
            agent=agent,
            estimate_usd=estimate,
            spent_usd=self._ledger.spend(since),
            agent_spent_usd=self._ledger.spend(since, agent=agent),
        )

    def _call(
        self,
        chat: ChatModel,
        agent: Agent[InT, OutT],
        request: InT,
        ctx: CallContext,
        tier: Tier,
        key: str,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        over_budget: bool,
    ) -> ModelCall:
        try:
            reply = chat.complete(
                model=tier.model,
                messages=messages,
                schema_name=f"{agent.name}_reply",
                schema=schema,
                max_output_tokens=self._max_output,
            )
        except ModelRefused as exc:
            row = self._row(agent, ctx, key, tier, chat.name, over_budget)
            return self._ledger.record(
                row.model_copy(
                    update={
                        "input_tokens": exc.input_tokens,
                        "output_tokens": exc.output_tokens,
                        "cost_usd": tier.price.cost(exc.input_tokens, exc.output_tokens),
                        "outcome": "refused",
                        "reason": str(exc),
                    }
                )
            )
        except UnusableReply as exc:  # like output that is not JSON: repair, then escalate
            row = self._row(agent, ctx, key, tier, chat.name, over_budget)
            return self._ledger.record(
                row.model_copy(update={"outcome": "invalid", "reason": str(exc)})
            )
        cost = tier.price.cost(reply.input_tokens, reply.output_tokens)
        valid, problem = self._evaluate(agent, request, reply.content)
        outcome: Literal["accepted", "invalid", "low_confidence"] = "invalid"
        reason = problem
        confidence = None
        if valid is not None:
            confidence = valid[1]
            outcome = "accepted"
            if confidence < self._policy.min_confidence:
                outcome = "low_confidence"
                reason = f"confidence {confidence:.2f} is below {self._policy.min_confidence:.2f}"
        row = self._row(agent, ctx, key, tier, chat.name, over_budget)
        return self._ledger.record(
            row.model_copy(
                update={
                    "model": reply.model or tier.model,
                    "input_tokens": reply.input_tokens,
                    "output_tokens": reply.output_tokens,
                    "cost_usd": cost,
                    "confidence": confidence,
                    "outcome": outcome,
                    "reason": reason,
                    "content": reply.content,
                }
            )
        )

    def _row(
        self,
        agent: Agent[Any, Any],
        ctx: CallContext,
        key: str,
        tier: Tier,
        provider: str,
        over_budget: bool,
    ) -> ModelCall:
        return ModelCall(
            call_key=key,
            agent=agent.name,
            prompt_version=agent.prompt_version,
            workflow_id=ctx.workflow_id,
            run_id=ctx.run_id,
            process=ctx.process,
            tier=tier.name,
            provider=provider,
            model=tier.model,
            input_tokens=0,
            output_tokens=0,
            cost_usd=Decimal(0),
            outcome="invalid",
            over_budget=over_budget,
        )

    def _evaluate(
        self, agent: Agent[InT, OutT], request: InT, content: str | None
    ) -> tuple[tuple[OutT, float] | None, str]:
        """(output, confidence) if the reply is usable, else what is wrong with it."""
        if not content or not content.strip():
            return None, "the reply is empty"
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            return None, f"the reply is not valid JSON ({exc.msg} at character {exc.pos})"
        try:
            envelope = Envelope.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            return None, f"{where}: {first['msg']}"
        try:
            output = agent.output_model.model_validate(envelope.output)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("output", *first["loc"]))
            return None, f"{where}: {first['msg']}"
        problem = agent.check(output, request)
        if problem:
            return None, f"output.{problem}"
        return (output, envelope.confidence), ""

    def _judge(
        self, agent: Agent[InT, OutT], request: InT, tier: Tier, stored: ModelCall, reused: bool
    ) -> tuple[Attempt, _Valid[OutT] | None, str]:
        attempt = Attempt(
            call_key=stored.call_key,
            tier=tier.name,
            model=stored.model,
            outcome=stored.outcome,
            cost_usd=float(stored.cost_usd),
            input_tokens=stored.input_tokens,
            output_tokens=stored.output_tokens,
            confidence=stored.confidence,
            reason=stored.reason,
            reused=reused,
        )
        if stored.outcome not in ("accepted", "low_confidence"):
            return attempt, None, stored.reason
        valid, problem = self._evaluate(agent, request, stored.content)
        if valid is None:  # the ledger's verdict no longer holds (a changed check)
            return attempt, None, problem
        usage = Usage(stored.input_tokens, stored.output_tokens)
        return attempt, _Valid(valid[0], valid[1], attempt, usage), ""

    def _done(
        self,
        agent: Agent[InT, OutT],
        request: InT,
        valid: _Valid[OutT],
        attempts: list[Attempt],
        provider: str,
        tier: Tier | None,
    ) -> AgentOutcome[OutT]:
        cost = round(sum(a.cost_usd for a in attempts), 6)
        usage = Usage(sum(a.input_tokens for a in attempts), sum(a.output_tokens for a in attempts))
        return AgentOutcome(
            result=AgentResult(
                output=valid.output,
                model=valid.attempt.model,
                usage=usage,
                cost_usd=cost,
                confidence=valid.confidence,
                memory_ids=agent.memory_ids(request),
                prompt_version=agent.prompt_version,
                provider=provider,
                tier=valid.attempt.tier if tier is None else tier.name,
                attempts=attempts,
            ),
            attempts=attempts,
        )

    def _record(
        self,
        agent: Agent[Any, Any],
        ctx: CallContext,
        attempt: Attempt,
        *,
        provider: str,
        content: str | None,
    ) -> None:
        self._ledger.record(
            ModelCall(
                call_key=attempt.call_key,
                agent=agent.name,
                prompt_version=agent.prompt_version,
                workflow_id=ctx.workflow_id,
                run_id=ctx.run_id,
                process=ctx.process,
                tier=attempt.tier,
                provider=provider,
                model=attempt.model,
                input_tokens=attempt.input_tokens,
                output_tokens=attempt.output_tokens,
                cost_usd=Decimal(0),
                confidence=attempt.confidence,
                outcome="template",
                reason=attempt.reason,
                content=content,
            )
        )
