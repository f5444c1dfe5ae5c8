"""Active tracing: which invocations are sampled, and lambdad's spans of each sampled one.

Sampling follows X-Ray's default rule (a reservoir of one request each second, then 5 % of
the rest) for functions whose ``TracingConfig.Mode`` is ``Active``; a caller's
``X-Amzn-Trace-Id`` carrying ``Sampled=1`` or ``Sampled=0`` decides instead, as on Lambda.
``PassThrough`` functions follow the caller and never sample on their own.
"""

from __future__ import annotations

import os
import random
import time

from lambdad.control.arns import Scope
from lambdad.invoke import lineage
from lambdad.observe.traces import Traces, invocation_spans
from lambdad.runtime.invocation import Outcome

ACTIVE = "Active"


class Sampler:
    """X-Ray's default sampling rule, per function: ``reservoir`` requests each second, then
    ``rate`` of the rest (X-Ray shares the reservoir across a rule's hosts; lambdad is one)."""

    def __init__(self, reservoir: int = 1, rate: float = 0.05, kept: int = 4096) -> None:
        self._reservoir = reservoir
        self._rate = rate
        self._kept = kept
        #: Per function: (the second, how many of its requests the reservoir took).
        self._seconds: dict[str, tuple[int, int]] = {}

    def sample(self, function: str) -> bool:
        second = int(time.monotonic())
        at, taken = self._seconds.get(function, (second, 0))
        if at != second:
            taken = 0
        if taken < self._reservoir:
            if len(self._seconds) >= self._kept:
                self._seconds.clear()
            self._seconds[function] = (second, taken + 1)
            return True
        return random.random() < self._rate


def caller_decision(header: str | None) -> str | None:
    """``"1"`` or ``"0"`` when the caller's trace header decided, else None."""
    if not header or "Sampled=" not in header:
        return None
    value = lineage.field(header, "Sampled")
    return value if value in ("0", "1") else None


class Tracing:
    """The sampling decision and lambdad's own spans, fed to ``traces``."""

    def __init__(self, traces: Traces, sampler: Sampler | None = None) -> None:
        self.traces = traces
        self._sampler = sampler or Sampler()

    def decide(self, function_arn: str, mode: str, caller: str | None, header: str) -> str:
        """``header`` (the invocation's, one hop further) with the sampling decision."""
        decided = caller_decision(caller)
        if decided is None:
            decided = "1" if mode == ACTIVE and self._sampler.sample(function_arn) else "0"
        if f";Sampled={decided};" in header:  # most invocations: nothing to change
            return header
        return lineage.with_field(header, "Sampled", decided)

    def begin(self, scope: Scope, function: str, header: str) -> None:
        """A sampled invocation of ``function`` starts."""
        root = lineage.field(header, "Root")
        if root:
            self.traces.begin(root, (scope.account_id, scope.region, function))

    def record(
        self,
        scope: Scope,
        function: str,
        caller: str | None,
        header: str,
        times: tuple[float, float],
        outcome: Outcome,
        queued: tuple[float, int] | None = None,
    ) -> None:
        """lambdad's spans of one sampled invocation (in memory; export is batched)."""
        fields = lineage.fields(header)
        root, parent = fields.get("Root"), fields.get("Parent")
        if not root or not parent:
            return
        caller_parent = lineage.fields(caller).get("Parent") if caller else None
        spans = invocation_spans(
            root,
            caller_parent if caller_parent and len(caller_parent) == 16 else None,
            parent,
            os.urandom(8).hex(),
            function,
            times,
            outcome.report.init_duration_ms,
            outcome.report.duration_ms,
            outcome.function_error,
            queued,
            outcome.report.restore_duration_ms,
        )
        self.traces.add(spans, (scope.account_id, scope.region, function))
