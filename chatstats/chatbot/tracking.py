"""In-memory workflow tracking: the live half of seed 003's checklist (the durable half is
the `thread_workflows` row, the event log the third).

Why a tracker and not only counters: the seeds' monitoring never saw a workflow start, so
nothing could say what was running or how long steps took. Here every turn is started,
updated per model response and tool call, and finished exactly once, and each of those
moves named metrics (ids and counts only, never content).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from chatstats.metrics import Metrics

PREFIX = "chatbot."


@dataclass
class Workflow:
    workflow_id: str
    thread_id: int
    model: str | None
    started: float = field(default_factory=time.perf_counter)
    steps: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class Tracker:
    """Workflows in flight, and the metrics every start, update and finish moves."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.active: dict[str, Workflow] = {}
        metrics.gauge(PREFIX + "workflows_active", lambda: len(self.active))

    def start(self, workflow_id: str, thread_id: int, model: str | None) -> Workflow:
        wf = Workflow(workflow_id, thread_id, model)
        self.active[workflow_id] = wf
        self.metrics.incr(PREFIX + "workflows_started")
        return wf

    def model_response(
        self, wf: Workflow, prompt: int | None, completion: int | None, cost: float | None
    ) -> None:
        wf.llm_calls += 1
        wf.prompt_tokens += prompt or 0
        wf.completion_tokens += completion or 0
        wf.cost += cost or 0.0
        self.metrics.incr(PREFIX + "llm_calls")
        self.metrics.incr(PREFIX + "prompt_tokens", prompt or 0)
        self.metrics.incr(PREFIX + "completion_tokens", completion or 0)
        self.metrics.incr(PREFIX + "cost", cost or 0.0)

    def tool_called(self, wf: Workflow, name: str, seconds: float, failed: bool) -> None:
        wf.tool_calls += 1
        self.metrics.incr(PREFIX + "tool_calls")
        if failed:
            self.metrics.incr(PREFIX + "tool_errors")
        self.metrics.observe(PREFIX + "tool." + name, seconds)

    def step(self, wf: Workflow, seconds: float, model_seconds: float) -> None:
        """One step: a model call and the tools it asked for. `model_seconds` is the call's
        own latency, so `step_own` is what the daemon itself spent."""
        wf.steps += 1
        self.metrics.observe(PREFIX + "step", seconds)
        self.metrics.observe(PREFIX + "step_own", max(0.0, seconds - model_seconds))

    def first_delta(self, seconds: float) -> None:
        self.metrics.observe(PREFIX + "first_delta", seconds)

    def finish(self, workflow_id: str, status: str) -> Workflow | None:
        """Exactly once per turn (a second call is a no-op): counts the outcome."""
        wf = self.active.pop(workflow_id, None)
        if wf is None:
            return None
        self.metrics.incr(PREFIX + ("workflows_completed" if status == "completed" else
                                    "workflows_failed"))  # fmt: skip
        self.metrics.observe(PREFIX + "turn", time.perf_counter() - wf.started)
        return wf
