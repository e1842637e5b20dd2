"""`make bench-events` at a small size, so the benchmark cannot rot (issue 24, item 5): a burst
of 60 credits through gunicorn, every one's event delivered, signed, to the receiver, none
lost or refused, in phase 0 (MongoDB's log) and in phase 4 (the TigerBeetle store's outbox;
on the real server when TB_ADDRESSES is set), there with two deliverers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_WAIT_S = 300


@pytest.mark.parametrize(("phase", "deliverers"), [("0", "1"), ("4", "2")])
def test_a_small_events_benchmark_delivers_every_write(phase: str, deliverers: str) -> None:
    command = [sys.executable, "-m", "bench.events_bench", "--writes", "60", "--wallets", "6"]
    command += ["--clients", "4", "--phase", phase, "--deliverers", deliverers]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT_S, check=False
    )

    last_line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert re.fullmatch(
        r"events: writes=60 write_per_s=[\d.]+ delivered_per_s=[\d.]+ ratio=[\d.]+ "
        r"delay_p50_ms=\d+ delay_p99_ms=\d+ lost=0 forged=0 out_of_order=0",
        last_line,
    ), f"{last_line!r}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0
