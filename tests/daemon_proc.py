"""`chatstats serve` as a real child process, for tests that kill, signal or orphan it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def serve(
    lib: Path,
    data: Path,
    *,
    token: str | None,
    env: dict[str, str] | None = None,
    stdout: int = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """Start the daemon on `lib`'s chat.db and AddressBook; token None: let it generate one."""
    base = {k: v for k, v in os.environ.items() if k != "CHATSTATS_TOKEN"}
    if token is not None:
        base["CHATSTATS_TOKEN"] = token
    cmd = [
        sys.executable, "-m", "chatstats", "serve", "--source", str(lib / "chat.db"),
        "--addressbook", str(lib / "AddressBook"), "--data-dir", str(data), "--port", "0",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, env={**base, **(env or {})}, stdout=stdout, stderr=subprocess.DEVNULL, text=True
    )


def ready(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    return json.loads(proc.stdout.readline())


def wait_live(url: str, token: str, seconds: float = 30.0) -> dict[str, Any]:
    """/api/health once the startup import is in and the live tail runs."""
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            health = client.get("/api/health").json()
            if (health["live"] or {}).get("state") == "ok" or time.monotonic() > deadline:
                return health
            time.sleep(0.1)
