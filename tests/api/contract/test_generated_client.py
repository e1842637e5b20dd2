"""A Python client generated from the schema (openapi-python-client, at test time into a
temporary directory) drives the five operations against a live server, on each store: what a
client developer gets from the schema alone is enough to credit, debit, read, void and be
told a refusal in the schema's own terms."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import requests

from tests.api.contract.live import LiveServer, live_server
from tests.conftest import STORE_NAMES

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PACKAGE = "wallet_client"
GENERATOR_CONFIG = (
    f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n"
)


@pytest.fixture(params=STORE_NAMES)
def server(request: pytest.FixtureRequest, mongo_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(
        store=request.param, mongo_url=mongo_url, log_path=tmp_path / "gunicorn.log"
    ) as live:
        yield live


def generated_client(server: LiveServer, directory: Path) -> ModuleType:
    """The client package openapi-python-client writes from the server's schema, imported."""
    schema = requests.get(
        f"{server.base_url}/api/schema/?format=json",
        headers={"Authorization": f"Token {server.token}"},
        timeout=30,
    )
    assert schema.status_code == 200
    (directory / "schema.json").write_bytes(schema.content)
    (directory / "config.yaml").write_text(GENERATOR_CONFIG)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "openapi-python-client"),
            "generate",
            "--path",
            str(directory / "schema.json"),
            "--output-path",
            str(directory / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(directory / "config.yaml"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    return importlib.import_module(PACKAGE)


@pytest.fixture
def client_package(server: LiveServer, tmp_path: Path) -> Iterator[ModuleType]:
    package = generated_client(server, tmp_path)
    try:
        yield package
    finally:
        sys.path.remove(str(tmp_path))


def test_a_client_generated_from_the_schema_drives_the_five_operations(
    server: LiveServer, client_package: ModuleType
) -> None:
    api = importlib.import_module(f"{PACKAGE}.api.clients")
    transactions = importlib.import_module(f"{PACKAGE}.api.transactions")
    models = importlib.import_module(f"{PACKAGE}.models")
    for module in ("add_credit", "subtract_credit", "get_balance", "get_balances"):
        importlib.import_module(f"{PACKAGE}.api.clients.{module}")
    for module in ("get_transaction", "void_transaction"):
        importlib.import_module(f"{PACKAGE}.api.transactions.{module}")
    client = client_package.AuthenticatedClient(
        base_url=server.base_url, token=server.token, prefix="Token"
    )
    client_id = f"generated-{uuid.uuid4().hex[:8]}"
    wallet = {
        "client_id": client_id,
        "country": models.AddCreditCountry("USA"),
        "currency": models.AddCreditCurrency("USD"),
    }
    debit_wallet = {
        "client_id": client_id,
        "country": models.SubtractCreditCountry("USA"),
        "currency": models.SubtractCreditCurrency("USD"),
    }
    credit_id, debit_id = f"credit-{uuid.uuid4().hex}", f"debit-{uuid.uuid4().hex}"

    credited = api.add_credit.sync_detailed(
        **wallet, client=client, body=models.CreditRequest(transaction_id=credit_id, amount="10.50")
    )
    replayed = api.add_credit.sync(
        **wallet, client=client, body=models.CreditRequest(transaction_id=credit_id, amount="10.50")
    )
    debited = api.subtract_credit.sync(
        **debit_wallet,
        client=client,
        body=models.DebitRequest(reference_id=debit_id, amount="2.25"),
    )
    refused = api.subtract_credit.sync(
        **debit_wallet,
        client=client,
        body=models.DebitRequest(reference_id=f"too-much-{uuid.uuid4().hex}", amount="100"),
    )
    balance = api.get_balance.sync(
        client_id=client_id,
        country=models.GetBalanceCountry("USA"),
        currency=models.GetBalanceCurrency("USD"),
        client=client,
    )
    balances = api.get_balances.sync(client_id=client_id, client=client)
    voided = transactions.void_transaction.sync(
        transaction_id=debit_id, client=client, body=models.VoidRequest(reason="charged twice")
    )
    read_back = transactions.get_transaction.sync(transaction_id=debit_id, client=client)

    assert credited.status_code == 201
    assert isinstance(credited.parsed, models.WalletResult)
    assert credited.parsed.balance.credit == "10.50" and credited.parsed.replayed is False
    assert isinstance(replayed, models.WalletResult) and replayed.replayed is True
    assert isinstance(debited, models.WalletResult) and debited.balance.credit == "8.25"
    assert isinstance(refused, models.SubtractCreditResponse422)
    assert refused.error.code.value == "insufficient_funds"
    assert isinstance(balance, models.WalletBalance) and balance.credit == "8.25"
    assert isinstance(balances, models.MultiBalance) and len(balances.wallets) == 1
    assert isinstance(voided, models.WalletResult) and voided.balance.credit == "10.50"
    assert isinstance(read_back, models.Transaction)
    assert read_back.void_reason == "charged twice" and read_back.voided_at is not None
