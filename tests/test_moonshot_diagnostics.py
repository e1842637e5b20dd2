"""What a failed moonshot leaves to read (issue 25's unexplained mirror stall): the run's
directory with the Celery worker's log, kept unless the run ended clean; the oldest entries a
mirror that did not drain still waits for, each with its wallet's document and registry row;
and a MongoDB of the run's own unless the environment names one (a `make run` elsewhere
answering on the default port stopped in the middle of a run and took its database along)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import override_settings

from bench.common import mongo_server
from bench.moonshot_bench import keep_on_failure, stuck_entries
from domain.ids import WalletKey
from ledger.stores.mongo_database import WALLETS, MongoDatabase
from ledger.stores.mongo_documents import key_filter
from migration.outbox import MirrorState
from registry import accounts as account_registry
from wallet_site.embedded_mongo import mongo_answers


def run_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "worker.log").write_text("[...] Task ledger.sweep_outbox succeeded\n")
    return directory


@pytest.mark.parametrize(
    ("outcome", "raised", "kept"),
    [
        ([0], False, False),  # a clean run
        ([1], False, True),  # lost or mismatched writes: exit 1
        ([], True, True),  # an exception before the report (a mirror that did not drain)
        ([], False, True),  # ended before any outcome was known
    ],
)
def test_the_run_directory_is_kept_unless_the_run_ended_clean(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    outcome: list[int],
    raised: bool,
    kept: bool,
) -> None:
    directory = run_directory(tmp_path)
    leave = keep_on_failure(directory, outcome)

    error = RuntimeError("84 log entries still wait for the mirror")
    swallowed = leave(*((RuntimeError, error, None) if raised else (None, None, None)))

    assert swallowed is False  # the run's own error still propagates
    assert (directory / "worker.log").exists() is kept
    said = capsys.readouterr().err
    assert (str(directory / "worker.log") in said) is kept


@pytest.fixture
def database(mongo_url: str, mongo_database_name: str) -> Iterator[MongoDatabase]:
    database = MongoDatabase(mongo_url, name=mongo_database_name, timeout_s=10)
    yield database
    database.client.close()


@pytest.mark.django_db
def test_stuck_entries_name_each_wallets_document_and_registry_row(
    database: MongoDatabase,
) -> None:
    legacy = WalletKey("stuck-legacy", "USA", "USD")
    born = WalletKey("stuck-born", "DEU", "EUR")
    written = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    database.db[WALLETS].insert_many(
        [
            {**key_filter(legacy), "wallet_seq": 7},
            {**key_filter(born), "wallet_seq": 2, "log_complete": True},
        ]
    )
    database.log().insert_many(
        [
            {
                "_id": "credit-1",
                "kind": "credit",
                **key_filter(legacy),
                "wallet_seq": 7,
                "mirror_state": MirrorState.AWAITING_BACKFILL,
                "created_at": written,
            },
            {
                "_id": "debit-1",
                "kind": "debit",
                **key_filter(born),
                "wallet_seq": 2,
                "mirror_state": MirrorState.PENDING,
                "mirror_attempts": 2,
                "mirror_error": "TigerBeetle unavailable",
                "created_at": written.replace(minute=1),
            },
            {
                "_id": "credit-2",
                "kind": "credit",
                **key_filter(born),
                "wallet_seq": 1,
                "mirror_state": MirrorState.MIRRORED,
                "created_at": written,
            },
        ]
    )
    account_registry.register_account(born, tb_account_id=0xB0, ledger=978, nonce=0)
    account_registry.settle_born_with_log(registry_pk=account_registry.rows_by_key([born])[born].pk)

    waiting = {"mirror_state": {"$in": [MirrorState.PENDING, MirrorState.AWAITING_BACKFILL]}}
    lines = stuck_entries(database, waiting)

    assert len(lines) == 2  # the mirrored entry is not waiting
    first, second = lines  # oldest first
    assert "'credit-1' credit seq 7" in first and "awaiting_backfill" in first
    assert "wallet seq 7, log_complete False; registry no row" in first
    assert "'debit-1' debit seq 2" in second and "attempts 2" in second
    assert "'TigerBeetle unavailable'" in second
    assert "wallet seq 2, log_complete True; registry opening_seq 0" in second


def test_the_benchmarks_do_not_borrow_a_mongodb_the_environment_does_not_name(
    mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server answering at the settings' URL (the default port on a shared machine) is not
    used unless MONGO_URL is in the environment."""
    monkeypatch.delenv("MONGO_URL", raising=False)
    with override_settings(MONGO_URL=mongo_url), mongo_server() as url:
        assert url != mongo_url
        assert mongo_answers(url)

    monkeypatch.setenv("MONGO_URL", mongo_url)
    with override_settings(MONGO_URL=mongo_url), mongo_server() as url:
        assert url == mongo_url
