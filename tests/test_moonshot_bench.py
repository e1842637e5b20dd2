"""`make bench-moonshot` at a small size, so the benchmark cannot rot (issue 25): 2,000 legacy
wallets moved while 20 writes/s and as many reads go through the API, ending in an audit of
every acknowledged write in both stores. It starts its own deployment (gunicorn, a Celery
worker with beat, a registry database of its own) on this run's services, so CI runs it once,
in the real TigerBeetle pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_WAIT_S = 600

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("CI_PASS") == "embedded",
        reason="CI runs the small moonshot once, in the real-server pass",
    ),
]


def test_a_small_moonshot_loses_and_mismatches_nothing() -> None:
    command = [sys.executable, "-m", "bench.moonshot_bench", "--wallets", "2000"]
    command += ["--writes-per-s", "20", "--before-s", "3", "--after-s", "1"]
    # One read rollout step (100 %) instead of five: each step is a manage.py start-up.
    env = {**os.environ, "READ_ROLLOUT_STEPS": "100"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_WAIT_S, check=False
    )

    last_line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert re.fullmatch(
        r"moonshot: wallets=2000 backfill_s=[\d.]+ reconcile_s=[\d.]+ "
        r"write_p99_ratio=[\d.]+ lost=0 mismatched=0",
        last_line,
    ), f"{last_line!r}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
