"""The OpenAPI schema is the contract: schemathesis, with every check and every phase (the
schema's examples, coverage, fuzzing, and the stateful phase following the schema's links from
a credit to its transaction, its void and its wallet), finds no difference between what the
schema says and what a live server answers, on each store.

Negative cases included: whatever the schema calls invalid, the server must refuse; whatever
it calls valid, the server must accept (or refuse only by the ledger's state: 404, 409, 422).
`schemathesis.toml` and `schemathesis_hooks.py` beside this file say what the schema cannot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.contract.live import BASE_DIR, live_server
from tests.conftest import STORE_NAMES

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HERE = Path(__file__).resolve().parent
# Enough for every phase to reach every operation and link. The coverage phase's cases do not
# depend on it and are most of the time: 114 of 135 s on the TigerBeetle store (9,904 cases,
# an idle machine; 123-153 s a store in CI, each in its own pass).
MAX_EXAMPLES = 25
RUN_TIMEOUT_S = 600  # a bound on a hung run, not a speed target (loaded machines: 273 s seen)
MONGO_BATCH_ITEMS_MAX = "100"


@pytest.mark.parametrize("store", STORE_NAMES)
def test_schemathesis_finds_no_difference_between_the_schema_and_the_server(
    store: str, mongo_url: str, tmp_path: Path
) -> None:
    with live_server(
        store=store, mongo_url=mongo_url, log_path=tmp_path / "gunicorn.log"
    ) as server:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{server.base_url}/api/schema/?format=json",
                "--url",
                server.base_url,
                "--header",
                f"Authorization: Token {server.token}",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                os.environ.get("CONTRACT_SEED", "20261205"),
                "--generation-database",
                "none",
                "--no-color",
            ],
            cwd=BASE_DIR,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.api.contract.schemathesis_hooks",
                "PYTHONPATH": str(BASE_DIR),
                # MongoDB takes a batch item by item: cut generated batches there.
                "CONTRACT_BATCH_ITEMS_MAX": MONGO_BATCH_ITEMS_MAX if store == "mongo" else "0",
            },
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )

    report = run.stdout[-12_000:] + run.stderr[-3_000:]
    assert run.returncode == 0, report
    assert "Stateful" in run.stdout and "API Links:" in run.stdout, report
    assert " 0 covered" not in run.stdout, f"no link between operations was followed\n{report}"
