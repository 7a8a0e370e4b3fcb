"""The analysis engine alone in its own process, for the kill-and-restart test.

    python -m tests.analysis_proc DB_PATH API_BASE

Runs the engine (dispatcher, workers, consumer) on the database against an OpenAI-compatible
server until SIGTERM. The test SIGKILLs it mid-run to play a crash.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio

from chatstats import llm, log
from chatstats.analysis.service import AnalysisService
from chatstats.db import Database
from chatstats.events.bus import EventBus


async def main(db_path: str, api_base: str) -> None:
    db = Database(Path(db_path))
    await db.open()
    config = llm.LLMConfig(
        model="openai/fake",
        api_base=api_base,
        timeout_s=5.0,
        input_cost_per_token=1e-6,
        output_cost_per_token=2e-6,
    )
    svc = AnalysisService(
        db,
        EventBus(db),
        None,
        config=config,
        concurrency=4,
        refill_seconds=0.2,
        backoff_base_s=0.05,
        backoff_cap_s=0.5,
    )
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        stop.set()
                        return

            tg.start_soon(on_signal)
            await svc.run(stop)
            tg.cancel_scope.cancel()
    finally:
        db.close()


if __name__ == "__main__":
    log.configure("WARNING", stream=sys.stderr)
    anyio.run(main, sys.argv[1], sys.argv[2])
