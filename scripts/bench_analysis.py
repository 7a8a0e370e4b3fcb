#!/usr/bin/env python
"""Benchmark the analysis queue: throughput against the ideal, and dispatcher memory.

    .venv/bin/python scripts/bench_analysis.py [--jobs 2000] [--latency 0.2] [--concurrency 4]

1. Throughput: `--jobs` analysis jobs through the real LiteLLM client against the fake
   OpenAI-compatible server (chatstats.testing.fake_llm) answering after a fixed latency.
   The ideal is concurrency ÷ latency jobs per second (every call slot always busy); the
   target is ≥ 0.9 of it. LiteLLM is imported and one call made before the clock starts.
2. Memory: the dispatcher with 2,000 and then 20,000 pending jobs and workers that never
   finish (so the queue stays full): queue length, ids held, and the Python memory traced
   while it dispatches. Flat means the in-memory queue does not grow with the backlog.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatstats import llm, log
from chatstats.analysis.service import AnalysisService
from chatstats.db import Database, connect, migrate
from chatstats.events.bus import EventBus
from chatstats.testing.fake_llm import FakeLLM

S = 1_000_000_000
T0 = 1_700_000_000 * S


def seed(path: Path, conversations: int, messages: int = 6) -> None:
    """Sealed conversations of a few messages each, spread over 50 chats."""
    conn = connect(path, write=True)
    migrate(conn)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO contacts (id, name) VALUES (1, 'Bench Contact')")
    conn.execute("INSERT INTO handles (id, identifier, service, contact_id) VALUES (1, 'x', '', 1)")
    conn.executemany(
        "INSERT INTO chats (id, guid, is_group) VALUES (?, ?, 0)",
        [(c, f"bench-chat-{c}") for c in range(1, 51)],
    )
    conn.executemany(
        "INSERT INTO conversations (id, chat_id, start_ns, end_ns, message_count, sealed)"
        " VALUES (?, ?, ?, ?, ?, 1)",
        [
            (i, i % 50 + 1, T0 + i * 86_400 * S, T0 + i * 86_400 * S + messages * 60 * S, messages)
            for i in range(1, conversations + 1)
        ],
    )
    conn.executemany(
        "INSERT INTO messages (guid, chat_id, conversation_id, handle_id, is_from_me, date_ns,"
        " text) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f"bench-{i}-{k}",
                i % 50 + 1,
                i,
                None if k % 2 else 1,
                k % 2,
                T0 + i * 86_400 * S + k * 60 * S,
                "shall we meet on friday at the usual place?",
            )
            for i in range(1, conversations + 1)
            for k in range(messages)
        ],
    )
    conn.execute("COMMIT")
    conn.close()


def _serve(conn: Any, latency: float) -> None:
    """The fake server in a process of its own, as a real provider would be: sharing the
    benchmark's GIL would slow both sides and measure the fake, not the engine."""
    with FakeLLM(latency_s=latency) as fake:
        conn.send(fake.base_url)
        while conn.recv() == "stats":
            conn.send({"requests": len(fake.requests), "max_in_flight": fake.max_in_flight})


class ServerProcess:
    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, latency), daemon=True)

    def __enter__(self) -> ServerProcess:
        self._proc.start()
        self.base_url: str = self._conn.recv()
        return self

    def stats(self) -> dict[str, int]:
        self._conn.send("stats")
        return self._conn.recv()

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._proc.join(10)


async def throughput(
    jobs: int, latency: float, concurrency: int, workdir: Path, stub: bool
) -> dict[str, Any]:
    path = workdir / f"throughput-{int(stub)}.db"
    seed(path, jobs)
    db = Database(path)
    await db.open()
    options: dict[str, Any] = {}
    if stub:
        # No LiteLLM, no HTTP: a call is a sleep. What is left is the engine's own overhead.
        async def call(config: Any, messages: Any, **kw: Any) -> Any:
            await anyio.sleep(latency)
            record = llm.CallRecord(
                purpose="analysis",
                model="stub",
                provider=None,
                prompt_tokens=1,
                completion_tokens=1,
                total_tokens=2,
                cost=0.0,
                latency_ms=latency * 1000,
                outcome="ok",
                error=None,
                job_id=kw["job_id"],
                run_id=kw["run_id"],
                conversation_id=kw["conversation_id"],
            )
            kw["record"](record)
            return llm.CallResult(
                content="",
                parsed={"summary": "s", "topics": [], "tone": "t"},
                model="stub",
                provider=None,
                prompt_tokens=1,
                completion_tokens=1,
                total_tokens=2,
                cost=0.0,
                latency_ms=latency * 1000,
                outcome="ok",
                error=None,
                call_id=None,
            )

        options = {"call": call, "record_call": llm.record_call}
    try:
        with ServerProcess(latency) as fake:
            config = llm.LLMConfig(
                model="openai/fake",
                api_base=fake.base_url,
                timeout_s=30,
                input_cost_per_token=1e-7,
                output_cost_per_token=4e-7,
            )
            # Import LiteLLM and make one call before the clock starts: both are one-offs.
            if not stub:
                await llm.complete(
                    config, [{"role": "user", "content": "hi"}], purpose="bench", record=None
                )
            svc = AnalysisService(
                db,
                EventBus(db),
                None,
                config=config,
                concurrency=concurrency,
                refill_seconds=1.0,
                **options,
            )
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(svc.run, stop)
                began = time.perf_counter()
                run = await svc.start_run(passes=["basic"])
                while True:
                    state = await svc.get_run(run.id)
                    if state["status"] == "complete":
                        break
                    await anyio.sleep(0.05)
                elapsed = time.perf_counter() - began
                stop.set()
            max_in_flight = fake.stats()["max_in_flight"]
            mean_call_ms = await db.read(
                lambda c: c.execute("SELECT avg(latency_ms) FROM llm_calls").fetchone()[0]
            )
    finally:
        db.close()
    rate = state["success"] / elapsed
    ideal = concurrency / latency
    return {
        "jobs": state["total"],
        "success": state["success"],
        "failed": state["failed"],
        "seconds": elapsed,
        "jobs_per_s": rate,
        "ideal_per_s": ideal,
        "fraction": rate / ideal,
        "max_in_flight": max_in_flight,
        "mean_call_ms": mean_call_ms,
        "calls": state["usage"]["calls"],
        "cost": state["usage"]["cost"],
    }


async def dispatcher_memory(pending: int, workdir: Path) -> dict[str, Any]:
    path = workdir / f"memory-{pending}.db"
    seed(path, pending, messages=1)
    db = Database(path)
    await db.open()
    never = anyio.Event()

    async def call_that_never_returns(*_a: Any, **_k: Any) -> Any:
        await never.wait()

    try:
        svc = AnalysisService(
            db,
            EventBus(db),
            None,
            config=llm.LLMConfig(model="openai/none"),
            call=call_that_never_returns,
            record_call=llm.record_call,
            refill_seconds=0.05,
            grace_seconds=0.0,
        )
        await svc.start_run(passes=["basic"])
        stop = anyio.Event()
        tracemalloc.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.run, stop)
            await anyio.sleep(1.0)  # ~20 refills with a full queue
            baseline = tracemalloc.get_traced_memory()[0]
            for _ in range(20):
                svc.wake()
                await anyio.sleep(0.05)
            current, peak = tracemalloc.get_traced_memory()
            queued = svc.engine.queued()
            held = len(svc.engine._dispatched)
            stop.set()
        tracemalloc.stop()
        counts = await svc.status()
    finally:
        db.close()
    return {
        "pending": counts["jobs"]["pending"] + counts["jobs"]["running"],
        "queue": queued,
        "ids_held": held,
        "traced_kb": current / 1024,
        "peak_kb": peak / 1024,
        "growth_kb": (current - baseline) / 1024,
    }


async def main(args: argparse.Namespace) -> None:
    log.configure("WARNING", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="chatstats-bench-") as tmp:
        workdir = Path(tmp)
        for stub in (False, True):
            t = await throughput(args.jobs, args.latency, args.concurrency, workdir, stub)
            what = "engine alone (a call is a sleep)" if stub else "through LiteLLM + HTTP"
            print(
                f"{what}: {t['success']:,}/{t['jobs']:,} jobs in {t['seconds']:.2f} s ="
                f" {t['jobs_per_s']:.2f} jobs/s; ideal {args.concurrency} / {args.latency:g} s ="
                f" {t['ideal_per_s']:.2f} jobs/s; fraction {t['fraction']:.3f} (target >= 0.9)"
            )
            if not stub:
                per_call = t["mean_call_ms"]
                engine = t["jobs_per_s"] / (args.concurrency / (per_call / 1000))
                print(
                    f"  mean call as accounted {per_call:.1f} ms (LiteLLM client + HTTP"
                    f" {per_call - args.latency * 1000:.1f} ms over the server's latency);"
                    f" engine keeps the slots {engine:.3f} busy; max in flight at the server"
                    f" {t['max_in_flight']}; accounted calls {t['calls']:,}; cost ${t['cost']:.4f}"
                )
        for pending in (2_000, 20_000):
            m = await dispatcher_memory(pending, workdir)
            print(
                f"dispatcher with {m['pending']:>6,} pending: queue {m['queue']}, ids held"
                f" {m['ids_held']}, traced {m['traced_kb']:.0f} KiB (peak {m['peak_kb']:.0f} KiB),"
                f" growth over 20 refills {m['growth_kb']:+.1f} KiB"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=4)
    anyio.run(main, parser.parse_args())
