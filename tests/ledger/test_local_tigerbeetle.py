"""`TB_BINARY=... make run`'s local TigerBeetle server: formatted once, started with production
defaults, and the same data file used again on the next run. Needs the real server binary
(TB_BINARY; CI sets it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import tigerbeetle as tb

from ledger.backends.tigerbeetle_client import TigerBeetleBackend
from wallet_site.embedded_mongo import free_loopback_port
from wallet_site.local_tigerbeetle import DATA_FILE_NAME, LOCAL_CLUSTER_ID, start_local_tigerbeetle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("TB_BINARY"), reason="TB_BINARY is not set: no TigerBeetle binary"
    ),
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The ~1.1 GB data file is deleted after the test, never left in pytest's tmp dirs."""
    yield tmp_path
    (tmp_path / DATA_FILE_NAME).unlink(missing_ok=True)


def test_the_local_server_is_formatted_once_and_keeps_its_data_across_runs(
    data_dir: Path,
) -> None:
    binary = Path(os.environ["TB_BINARY"])
    account = tb.Account(id=tb.id(), ledger=840, code=7101)

    first = start_local_tigerbeetle(binary, data_dir=data_dir, port=free_loopback_port())
    backend = TigerBeetleBackend(cluster_id=LOCAL_CLUSTER_ID, addresses=first.addresses)
    try:
        created = backend.create_accounts([account])
    finally:
        backend.close()
        first.stop()
    formatted_inode = first.data_file.stat().st_ino

    second = start_local_tigerbeetle(binary, data_dir=data_dir, port=free_loopback_port())
    backend = TigerBeetleBackend(cluster_id=LOCAL_CLUSTER_ID, addresses=second.addresses)
    try:
        found = backend.lookup_accounts([account.id])
    finally:
        backend.close()
        second.stop()

    assert created[0].status == tb.CreateAccountStatus.CREATED
    assert second.data_file.stat().st_ino == formatted_inode
    assert [a.id for a in found] == [account.id]
