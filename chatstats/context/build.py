"""A full index build in a child process: `python -m chatstats.context.build DATA DB EVENT PID`.

Why a process and not the daemon's worker thread: a build allocates and frees far more than
the index it leaves (the token matrices of 300k texts, hnswlib's growing graph, the SQLite
scan, the tokenizer's threads), and glibc keeps most of that heap once it is freed. Built in
the daemon, the 300k library left `chatstats serve` at 561 MB RSS (564 MB peak) against a
500 MB budget; loaded from the files a child wrote, 381 MB. A child also holds no GIL the
live sync needs while it runs.

The child writes the index files exactly as an in-process build does (temporary files
renamed into place, the metadata last, 0600), so a kill -9 of either process leaves the
previous complete set or none; the daemon then loads what the child saved. It reports
`progress <fraction>` lines on stdout and exits when its parent is gone (a daemon killed
mid-build must not leave a builder behind).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from chatstats import log

logger = log.get(__name__)


def run_child(
    data_dir: Path, db_path: Path, event_id: int, on_progress: Callable[[float], None]
) -> bool:
    """Build the index in a child process; True when it exited cleanly (its files saved).
    Blocks the calling (worker) thread until the child is done."""
    cmd = [sys.executable, "-m", "chatstats.context.build", str(data_dir), str(db_path)]
    proc = subprocess.Popen(
        [*cmd, str(event_id), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "progress":
            with contextlib.suppress(ValueError):
                on_progress(float(parts[1]))
    code = proc.wait()
    if code != 0:
        logger.warning("index_build_child_failed", returncode=code)
    return code == 0


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(
            "usage: python -m chatstats.context.build DATA_DIR DB EVENT_ID PARENT_PID",
            file=sys.stderr,
        )
        return 2
    from chatstats.context.embed import bundled
    from chatstats.context.index import VectorIndex
    from chatstats.db import connect

    data_dir, db_path, event_id, parent = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    if os.getppid() != parent:
        return 3  # the daemon died while this process started: write nothing
    index = VectorIndex(data_dir, bundled())
    done = threading.Event()

    def report() -> None:
        while not done.wait(0.5):
            if os.getppid() != parent:
                os._exit(3)  # orphaned: the daemon was killed; its successor rebuilds
            try:
                print(f"progress {index.status.progress:.4f}", flush=True)
            except OSError:  # the pipe is gone with the daemon
                os._exit(3)

    threading.Thread(target=report, daemon=True).start()
    conn = connect(db_path, write=False)
    try:
        index.rebuild(conn, event_id)
    finally:
        done.set()
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
