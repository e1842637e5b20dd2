"""The load test's users (locust): credits, debits, balance reads and voids over the HTTP API.

Run by `bench/load_bench.py` (`make bench-load`), which starts the app and reads the tally this
file writes. Each user has a wallet of its own and shares LOAD_SHARED_WALLETS wallets with
every other user. Every write is recorded in the tally before it is sent ("pending") and
settled by its answer: "applied" (201, or 200 for a replay), "refused" (the API's answer for
a write that posts nothing: insufficient_funds, void_would_overdraw, wallet_not_found). A 503
(store_unavailable, writes_paused), a connection error or a timeout is retried with the same
id; what is still pending when the run stops is settled afterwards by load_bench, with the
same id again.

Environment: LOAD_AUTHORIZATION (the Authorization header), LOAD_RUN (a prefix of every id),
LOAD_TALLY (where to write the tally, JSON), LOAD_SHARED_WALLETS.

`PingUser` is the same run's baseline: as many users, waiting as long between requests, on the
bare authenticated endpoint `/api/ping` (the same server, authentication and rendering, no
wallet work). load_bench runs it on its own (`locust ... PingUser`).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import gevent
from locust import HttpUser, between, events, task

RUN = os.environ.get("LOAD_RUN", "load")
AUTHORIZATION = os.environ.get("LOAD_AUTHORIZATION", "")
TALLY_PATH = os.environ.get("LOAD_TALLY", "load-tally.json")
SHARED_WALLETS = int(os.environ.get("LOAD_SHARED_WALLETS", "20"))
REQUEST_TIMEOUT_S = 30.0
RETRIES_MAX = 10
RETRY_PAUSE_S = 0.2
WALLET_COUNTRY, WALLET_CURRENCY = "USA", "USD"
# Answers to a write that posts nothing (a debit on a shared wallet nobody credited yet).
REFUSALS = {"insufficient_funds", "void_would_overdraw", "wallet_not_found"}
RETRYABLE = {"store_unavailable", "writes_paused"}

# transaction id -> {"kind", "client_id", "amount_minor", "outcome"}; gevent switches only on
# I/O, so the users share these without locks.
WRITES: dict[str, dict[str, Any]] = {}
VOIDS: dict[str, str] = {}  # voided transaction id -> outcome
UNEXPECTED: dict[str, int] = {}  # "<status> <code>" -> count


def wallet_path(client_id: str) -> str:
    return f"/api/clients/{client_id}/wallets/{WALLET_COUNTRY}/{WALLET_CURRENCY}"


def shared_client_id(number: int) -> str:
    return f"{RUN}-shared-{number}"


def error_code(response: Any) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


WAIT_S = between(0.5, 2.0)


class PingUser(HttpUser):
    wait_time = WAIT_S

    def on_start(self) -> None:
        self.client.headers["Authorization"] = AUTHORIZATION

    @task
    def ping(self) -> None:
        with self.client.get(
            "/api/ping", name="ping", timeout=REQUEST_TIMEOUT_S, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code or response.error}")


class WalletUser(HttpUser):
    wait_time = WAIT_S

    def on_start(self) -> None:
        self.client.headers["Authorization"] = AUTHORIZATION
        self.own_client_id = f"{RUN}-user-{id(self):x}-{random.getrandbits(32):08x}"
        self.sequence = 0
        self.posted: list[str] = []  # this user's applied writes, candidates for a void
        self.write(
            "credit", client_id=self.own_client_id, amount_minor=100_000
        )  # room for the debits

    def next_id(self, kind: str) -> str:
        self.sequence += 1
        return f"{self.own_client_id}-{kind}-{self.sequence}"

    def pick_wallet(self) -> str:
        if random.random() < 0.5:
            return shared_client_id(random.randrange(SHARED_WALLETS))
        return self.own_client_id

    @task(35)
    def credit(self) -> None:
        self.write("credit", client_id=self.pick_wallet(), amount_minor=random.randint(1, 5_000))

    @task(25)
    def debit(self) -> None:
        self.write("debit", client_id=self.pick_wallet(), amount_minor=random.randint(1, 5_000))

    @task(30)
    def balance(self) -> None:
        client_id = self.pick_wallet()
        with self.client.get(
            wallet_path(client_id),
            name="balance",
            timeout=REQUEST_TIMEOUT_S,
            catch_response=True,
        ) as response:
            if response.status_code == 200 or error_code(response) == "wallet_not_found":
                response.success()  # a shared wallet nobody credited yet has no balance
            else:
                self.unexpected(response)

    @task(10)
    def void(self) -> None:
        if not self.posted:
            return
        transaction_id = self.posted.pop(random.randrange(len(self.posted)))
        VOIDS[transaction_id] = "pending"
        VOIDS[transaction_id] = self.send(
            "void",
            path=f"/api/transactions/{transaction_id}/void",
            body={"reason": "load test"},
            already_done="already_voided",
        )

    def write(self, kind: str, *, client_id: str, amount_minor: int) -> None:
        transaction_id = self.next_id(kind)
        id_field = "transaction_id" if kind == "credit" else "reference_id"
        WRITES[transaction_id] = {
            "kind": kind,
            "client_id": client_id,
            "amount_minor": amount_minor,
            "outcome": "pending",
        }
        body = {
            id_field: transaction_id,
            "amount": f"{amount_minor // 100}.{amount_minor % 100:02d}",
        }
        outcome = self.send(kind, path=f"{wallet_path(client_id)}/{kind}s", body=body)
        WRITES[transaction_id]["outcome"] = outcome
        if outcome == "applied":
            self.posted.append(transaction_id)

    def send(self, name: str, *, path: str, body: dict[str, Any], already_done: str = "") -> str:
        """POST until the API settles it; "applied", "refused" or "pending"."""
        for attempt in range(RETRIES_MAX):
            with self.client.post(
                path, json=body, name=name, timeout=REQUEST_TIMEOUT_S, catch_response=True
            ) as response:
                code = error_code(response)
                if response.status_code in (200, 201) or (code and code == already_done):
                    response.success()
                    return "applied"
                if code in REFUSALS:
                    response.success()  # the API's answer to a write that posts nothing
                    return "refused"
                if response.status_code == 0 or code in RETRYABLE:
                    response.failure(f"retried: {code or response.error}")
                else:
                    self.unexpected(response)
                    return "pending"  # settled afterwards with the same id
            gevent.sleep(RETRY_PAUSE_S * (attempt + 1))
        return "pending"

    def unexpected(self, response: Any) -> None:
        if response.status_code:
            label = f"{response.status_code} {error_code(response)}".strip()
        else:  # no answer: a timeout or a reset connection
            label = f"no answer: {type(response.error).__name__}"
        UNEXPECTED[label] = UNEXPECTED.get(label, 0) + 1
        response.failure(label)


@events.test_stop.add_listener
def write_tally(**_: Any) -> None:
    with open(TALLY_PATH, "w") as tally:
        json.dump({"writes": WRITES, "voids": VOIDS, "unexpected": UNEXPECTED}, tally)
