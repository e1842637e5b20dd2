"""The embedded MongoDB daemon's cycle collector (wallet_site.mongo_server): tuned for a
server holding large find results, or Python's defaults when asked (the benchmark's
baseline). Each case runs in a fresh interpreter so the test process keeps its own."""

from __future__ import annotations

import subprocess
import sys

from wallet_site.embedded_mongo import PROJECT_DIR
from wallet_site.mongo_server import SERVER_GC_THRESHOLDS

PROBE = (
    "import gc, sys; from wallet_site.mongo_server import configure_collector; "
    "defaults = gc.get_threshold(); configure_collector(sys.argv[1]); "
    "print(gc.get_threshold(), gc.get_threshold() == defaults, gc.get_freeze_count() > 0)"
)


def collector_after(collector: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", PROBE, collector],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_DIR,
    ).stdout.strip()


def test_the_server_collector_freezes_start_up_and_raises_the_thresholds() -> None:
    assert collector_after("server") == f"{SERVER_GC_THRESHOLDS} False True"


def test_the_python_collector_keeps_the_interpreter_defaults() -> None:
    assert collector_after("python").endswith("True False")
