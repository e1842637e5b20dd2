"""Who may call what on the REST API, through real (knox) tokens: model permissions per
operation, roles, expiry and revocation, no session authentication, per-token throttling,
and the principal kept with every credit, debit and void."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from api import views
from domain.ids import WalletKey
from domain.wallets import TransactionState, WalletStore
from ledger.service import WalletService
from tests.conftest import api_client_for, grant, token_api_client
from tests.roles import SERVICE_ACCOUNT, role

pytestmark = pytest.mark.django_db

OPERATIONS = (
    "add_credit",
    "subtract_credit",
    "get_balance",
    "get_balances",
    "get_transaction",
    "void_transaction",
)


class Wallet:
    """A wallet holding 50.00 from one credit (`seed_id`), served by the store under test."""

    def __init__(self, store: WalletStore) -> None:
        self.store = store
        self.client_id = f"client-{uuid.uuid4().hex[:10]}"
        self.key = WalletKey(client_id=self.client_id, country="USA", currency="USD")
        self.seed_id = f"seed-{uuid.uuid4().hex}"
        store.add_credit(self.key, 5000, self.seed_id)

    @property
    def url(self) -> str:
        return f"/api/clients/{self.client_id}/wallets/USA/USD"

    def call(self, client: APIClient, operation: str) -> Any:
        new_id = uuid.uuid4().hex
        if operation == "add_credit":
            body = {"transaction_id": new_id, "amount": "1000.00"}
            return client.post(f"{self.url}/credits", body, format="json")
        if operation == "subtract_credit":
            body = {"reference_id": new_id, "amount": "10.00"}
            return client.post(f"{self.url}/debits", body, format="json")
        if operation == "get_balance":
            return client.get(self.url)
        if operation == "get_balances":
            return client.get(f"/api/clients/{self.client_id}/wallets")
        if operation == "get_transaction":
            return client.get(f"/api/transactions/{self.seed_id}")
        assert operation == "void_transaction"
        return client.post(
            f"/api/transactions/{self.seed_id}/void", {"reason": "test"}, format="json"
        )

    def statuses(self, client: APIClient) -> dict[str, int]:
        return {operation: self.call(client, operation).status_code for operation in OPERATIONS}

    def state(self) -> tuple[tuple[int, int, int], TransactionState]:
        balance = self.store.get_balance(self.key)
        return balance.fields_minor(), self.store.get_transaction(self.seed_id).state


@pytest.fixture
def wallet(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> Wallet:
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    return Wallet(wallet_store)


def new_user(*, is_staff: bool = False) -> AbstractUser:
    return get_user_model().objects.create_user(f"user-{uuid.uuid4().hex[:8]}", is_staff=is_staff)


def client_in_role(name: str, *, is_staff: bool) -> APIClient:
    user = new_user(is_staff=is_staff)
    user.groups.add(role(name))
    return api_client_for(user)


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


def test_a_token_without_permissions_gets_403_on_every_operation_and_nothing_changes(
    wallet: Wallet,
) -> None:
    before = wallet.state()
    client = token_api_client(permissions=())

    responses = {operation: wallet.call(client, operation) for operation in OPERATIONS}

    assert {op: r.status_code for op, r in responses.items()} == dict.fromkeys(OPERATIONS, 403)
    assert {error_code(r) for r in responses.values()} == {"permission_denied"}
    assert wallet.state() == before


def test_product_can_neither_void_nor_credit_nor_read_wallets(wallet: Wallet) -> None:
    before = wallet.state()

    statuses = wallet.statuses(client_in_role("Product", is_staff=True))

    assert statuses == dict.fromkeys(OPERATIONS, 403)
    assert wallet.state() == before


def test_support_can_read_and_void_but_not_credit_or_debit(wallet: Wallet) -> None:
    statuses = wallet.statuses(client_in_role("Support", is_staff=True))

    assert statuses == {
        "add_credit": 403,
        "subtract_credit": 403,
        "get_balance": 200,
        "get_balances": 200,
        "get_transaction": 200,
        "void_transaction": 200,
    }
    assert wallet.state() == ((0, 5000, 5000), TransactionState.VOIDED)


def test_support_granted_the_credit_permission_can_credit(wallet: Wallet) -> None:
    user = new_user(is_staff=True)
    user.groups.add(role("Support"))
    grant(user, "registry.credit_wallets")

    response = wallet.call(api_client_for(user), "add_credit")

    assert response.status_code == 201


def test_a_service_account_reads_credits_and_debits_but_cannot_void(wallet: Wallet) -> None:
    statuses = wallet.statuses(client_in_role(SERVICE_ACCOUNT, is_staff=False))

    assert statuses == {
        "add_credit": 201,
        "subtract_credit": 201,
        "get_balance": 200,
        "get_balances": 200,
        "get_transaction": 200,
        "void_transaction": 403,
    }
    assert wallet.state()[1] == TransactionState.POSTED


def test_a_service_account_granted_only_reads_cannot_move_money(wallet: Wallet) -> None:
    before = wallet.state()

    statuses = wallet.statuses(token_api_client(permissions=("registry.read_wallets",)))

    assert statuses == {
        "add_credit": 403,
        "subtract_credit": 403,
        "get_balance": 200,
        "get_balances": 200,
        "get_transaction": 200,
        "void_transaction": 403,
    }
    assert wallet.state() == before


def test_an_expired_token_gets_401_authentication_failed(wallet: Wallet) -> None:
    user = new_user()
    user.groups.add(role(SERVICE_ACCOUNT))
    _, token = AuthToken.objects.create(user=user, expiry=timedelta(seconds=-1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = wallet.call(client, "get_balance")

    assert response.status_code == 401
    assert error_code(response) == "authentication_failed"


def test_a_revoked_token_gets_401_and_its_replacement_works(wallet: Wallet) -> None:
    user = new_user()
    user.groups.add(role(SERVICE_ACCOUNT))
    old, old_token = AuthToken.objects.create(user=user)
    _, new_token = AuthToken.objects.create(user=user)
    old.delete()  # revoked (the admin's delete, or create_service_account --revoke-others)
    revoked, current = APIClient(), APIClient()
    revoked.credentials(HTTP_AUTHORIZATION=f"Token {old_token}")
    current.credentials(HTTP_AUTHORIZATION=f"Token {new_token}")

    assert wallet.call(revoked, "get_balance").status_code == 401
    assert wallet.call(current, "get_balance").status_code == 200


def test_a_call_without_a_token_gets_401_not_authenticated(wallet: Wallet) -> None:
    response = wallet.call(APIClient(), "add_credit")

    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"


def test_tokens_are_stored_hashed_never_in_clear() -> None:
    _, token = AuthToken.objects.create(user=new_user())

    stored = AuthToken.objects.get()

    assert token not in stored.digest and len(stored.digest) == 128
    assert stored.token_key == token[: len(stored.token_key)] != token


def test_an_admin_session_does_not_authenticate_on_the_api(wallet: Wallet) -> None:
    admin = get_user_model().objects.create_superuser("root", password="pw-for-test")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin)

    credit = browser.post(
        f"{wallet.url}/credits",
        {"transaction_id": "session-credit", "amount": "1000.00"},
        content_type="application/json",
    )
    balance = browser.get(wallet.url)

    assert (credit.status_code, balance.status_code) == (401, 401)
    assert wallet.state()[0] == (5000, 0, 5000)


def test_a_token_over_its_rate_gets_429_in_the_error_shape(wallet: Wallet, settings: Any) -> None:
    settings.API_THROTTLE_RATE = "3/min"
    client = token_api_client()

    statuses = [wallet.call(client, "get_balance").status_code for _ in range(3)]
    throttled = wallet.call(client, "get_balance")

    assert statuses == [200, 200, 200]
    assert throttled.status_code == 429
    assert error_code(throttled) == "throttled"
    assert throttled.json()["error"]["details"]["retry_after_s"] > 0
    assert int(throttled["Retry-After"]) > 0


def test_each_token_has_its_own_rate_budget(wallet: Wallet, settings: Any) -> None:
    settings.API_THROTTLE_RATE = "2/min"
    user = new_user()
    grant(user, "registry.read_wallets")
    runaway, other = api_client_for(user), api_client_for(user)

    for _ in range(3):
        wallet.call(runaway, "get_balance")

    assert wallet.call(runaway, "get_balance").status_code == 429
    assert wallet.call(other, "get_balance").status_code == 200


def test_credits_debits_and_voids_record_the_authenticated_principal(wallet: Wallet) -> None:
    service_user = new_user()
    service_user.groups.add(role(SERVICE_ACCOUNT))
    support_user = new_user(is_staff=True)
    support_user.groups.add(role("Support"))
    service = api_client_for(service_user)
    credit_id, debit_id = uuid.uuid4().hex, uuid.uuid4().hex

    credit = service.post(
        f"{wallet.url}/credits", {"transaction_id": credit_id, "amount": "5.00"}, format="json"
    )
    service.post(
        f"{wallet.url}/debits", {"reference_id": debit_id, "amount": "1.00"}, format="json"
    )
    api_client_for(support_user).post(
        f"/api/transactions/{credit_id}/void", {"reason": "duplicate"}, format="json"
    )

    assert credit.json()["transaction"]["made_by"] == service_user.username
    assert wallet.store.get_transaction(debit_id).made_by == service_user.username
    voided = wallet.store.get_transaction(credit_id)
    assert (voided.made_by, voided.voided_by) == (service_user.username, support_user.username)
