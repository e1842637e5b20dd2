"""Live traffic for the fault matrix: threads, each on a wallet of its own, issuing credits,
debits, voids and balance reads through the API as a payment system does, and keeping every
answer.

A write answered 2xx is acknowledged. A write answered 503 (or not answered) has an unknown
outcome; as the README tells clients, it is sent again later with the same id and body until
it gets a definitive answer (`settle`). A debit or a void is only sent when the wallet holds
its amount even if every write of unknown outcome was applied, so no refusal for funds is
expected: every answer that is neither 2xx nor a documented 503 is a finding.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

DOCUMENTED_503_CODES = {"store_unavailable", "writes_paused", "database_unavailable"}
REQUEST_TIMEOUT_S = 15.0
CREDIT_MINOR = 500
DEBIT_MINOR = 100
SETTLE_WAIT_S = 30.0
PAUSE_S = 0.02  # between a thread's requests: modest traffic, the machine is shared
RETRY_AFTER_CAP_S = 0.5  # a client honours Retry-After; capped, so a 3 s outage sees traffic
CYCLE = ("credit", "read", "debit", "credit", "read", "void")


@dataclass
class Write:
    kind: str  # credit, debit, void (of one of the wallet's credits)
    transaction_id: str  # the id the write carries (for a void: the voided credit's)
    amount_minor: int
    outcome: str = "unknown"  # acknowledged, unknown, refused


@dataclass
class Tally:
    """Every answer of a cell's traffic, by kind."""

    requests: int = 0
    acknowledged: int = 0
    reads_ok: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "503 store_unavailable", ...
    findings: list[str] = field(default_factory=list)  # 500s, undocumented answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finding(self, what: str) -> None:
        with self.lock:
            self.findings.append(what)

    def summary(self) -> dict[str, Any]:
        unavailable = {k: v for k, v in self.answers.items() if k.startswith("503")}
        return {
            "requests": self.requests,
            "acknowledged": self.acknowledged,
            "reads_ok": self.reads_ok,
            "503": unavailable,
            "500": sum(v for k, v in self.answers.items() if k.startswith("500")),
            "findings": len(self.findings),
        }


class WalletTraffic:
    """One thread's wallet and everything it sent."""

    def __init__(self, base_url: str, token: str, tally: Tally, *, reader: bool = False) -> None:
        """`reader`: only reads, once its wallet exists (`open_wallet`)."""
        self.reader = reader
        self.client_id = f"faults-{uuid.uuid4().hex[:12]}"
        self.wallet_url = f"{base_url}/api/clients/{self.client_id}/wallets/USA/USD"
        self.base_url = base_url
        self.tally = tally
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.writes: list[Write] = []
        self.voided: set[str] = set()

    # --- what the wallet must hold ---------------------------------------------------------

    def worst_case_available_minor(self) -> int:
        """Available credit if no unknown credit was applied and every unknown spend was."""
        credits = sum(
            w.amount_minor
            for w in self.writes
            if w.kind == "credit" and w.outcome == "acknowledged"
        )
        spent = sum(
            w.amount_minor for w in self.writes if w.kind != "credit" and w.outcome != "refused"
        )
        return credits - spent

    def expected_fields_minor(self) -> tuple[int, int, int]:
        """(credit, debit, historical credit) from the acknowledged writes: a void of a credit
        moves its amount from available to spent, as a debit does."""
        acknowledged = [w for w in self.writes if w.outcome == "acknowledged"]
        received = sum(w.amount_minor for w in acknowledged if w.kind == "credit")
        spent = sum(w.amount_minor for w in acknowledged if w.kind != "credit")
        return received - spent, spent, received

    # --- sending ---------------------------------------------------------------------------

    def open_wallet(self) -> None:
        write = self.next_write("credit")
        assert write is not None
        self.send(write)

    def run(self, stop: threading.Event) -> None:
        for step in itertools.cycle(("read",) if self.reader else CYCLE):
            if stop.is_set():
                return
            if step == "read":
                self.read()
            else:
                write = self.next_write(step)
                if write is not None:
                    self.send(write)
            time.sleep(PAUSE_S)

    def next_write(self, kind: str) -> Write | None:
        available = self.worst_case_available_minor()
        if kind == "credit":
            return Write("credit", f"c-{uuid.uuid4().hex}", CREDIT_MINOR)
        if kind == "debit" and available >= DEBIT_MINOR:
            return Write("debit", f"d-{uuid.uuid4().hex}", DEBIT_MINOR)
        if kind == "void" and available >= CREDIT_MINOR:
            for credit in self.writes:
                if (
                    credit.kind == "credit"
                    and credit.outcome == "acknowledged"
                    and credit.transaction_id not in self.voided
                ):
                    self.voided.add(credit.transaction_id)
                    return Write("void", credit.transaction_id, credit.amount_minor)
        return None

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        with self.tally.lock:
            self.tally.requests += 1
        try:
            return self.session.request(method, url, json=body, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            self.tally.finding(f"{method} {url}: no answer ({type(exc).__name__})")
            return None

    def _classify(self, response: Any, what: str) -> str:
        """'ok', 'retry' (a documented 503: this thread then waits as Retry-After says, up to
        RETRY_AFTER_CAP_S) or 'finding'; counts the answer."""
        verdict = self._verdict(response, what)
        if verdict == "retry" and response is not None:
            time.sleep(min(float(response.headers["Retry-After"]), RETRY_AFTER_CAP_S))
        return verdict

    def _verdict(self, response: Any, what: str) -> str:
        if response is None:
            return "retry"
        code = ""
        if response.status_code >= 400:
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "(not the error shape)"
        with self.tally.lock:
            self.tally.answers[f"{response.status_code} {code}".strip()] += 1
        if response.status_code in (200, 201):
            return "ok"
        if (
            response.status_code == 503
            and code in DOCUMENTED_503_CODES
            and int(response.headers.get("Retry-After", "0")) > 0
        ):
            return "retry"
        self.tally.finding(f"{what}: {response.status_code} {response.text[:300]}")
        return "finding"

    def send(self, write: Write) -> None:
        self.writes.append(write)
        method, url, body = self._request_of(write)
        response = self._request(method, url, body)
        verdict = self._classify(response, f"{write.kind} {write.transaction_id}")
        if verdict == "ok":
            write.outcome = "acknowledged"
            with self.tally.lock:
                self.tally.acknowledged += 1
        elif verdict == "finding":
            write.outcome = "refused"

    def _request_of(self, write: Write) -> tuple[str, str, dict[str, Any]]:
        amount = f"{write.amount_minor // 100}.{write.amount_minor % 100:02d}"
        if write.kind == "credit":
            body = {"transaction_id": write.transaction_id, "amount": amount}
            return "POST", f"{self.wallet_url}/credits", body
        if write.kind == "debit":
            body = {"reference_id": write.transaction_id, "amount": amount}
            return "POST", f"{self.wallet_url}/debits", body
        url = f"{self.base_url}/api/transactions/{write.transaction_id}/void"
        return "POST", url, {"reason": "fault matrix"}

    def read(self) -> None:
        if not any(w.outcome == "acknowledged" for w in self.writes):
            return  # no wallet yet
        response = self._request("GET", self.wallet_url)
        if self._classify(response, "read") == "ok":
            with self.tally.lock:
                self.tally.reads_ok += 1

    def settle(self) -> None:
        """Send every write of unknown outcome again, same id and body, until it is answered."""
        deadline = time.monotonic() + SETTLE_WAIT_S
        for write in self.writes:
            while write.outcome == "unknown" and time.monotonic() < deadline:
                method, url, body = self._request_of(write)
                response = self._request(method, url, body)
                if response is not None and response.status_code in (200, 201, 409):
                    self._count_settled(response)
                    write.outcome = "acknowledged"
                    if response.status_code == 409 and write.kind != "void":
                        self.tally.finding(
                            f"settling {write.transaction_id}: {response.text[:300]}"
                        )
                elif response is not None and response.status_code != 503:
                    self._classify(response, f"settling {write.transaction_id}")
                    write.outcome = "refused"
                else:
                    time.sleep(0.2)
            if write.outcome == "unknown":
                self.tally.finding(f"{write.kind} {write.transaction_id} never answered")

    def _count_settled(self, response: Any) -> None:
        with self.tally.lock:
            self.tally.answers[f"settled {response.status_code}"] += 1

    def balance(self) -> dict[str, Any] | None:
        response = self.session.get(self.wallet_url, timeout=REQUEST_TIMEOUT_S)
        return response.json() if response.status_code == 200 else None


class Traffic:
    """`wallets` threads of WalletTraffic, started and stopped together."""

    def __init__(self, base_url: str, token: str, *, wallets: int = 3, readers: int = 0) -> None:
        """`wallets` threads writing and reading, `readers` more only reading a wallet that
        holds one credit (`open_reader_wallets` before `start`)."""
        self.tally = Tally()
        self.wallets = [WalletTraffic(base_url, token, self.tally) for _ in range(wallets)]
        self.readers = [
            WalletTraffic(base_url, token, self.tally, reader=True) for _ in range(readers)
        ]
        self.wallets += self.readers
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=wallet.run, args=(self._stop,), daemon=True)
            for wallet in self.wallets
        ]

    def open_reader_wallets(self) -> None:
        for reader in self.readers:
            reader.open_wallet()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S * 2)

    def settle(self) -> None:
        """Every wallet's writes of unknown outcome sent again, the wallets side by side."""
        threads = [threading.Thread(target=wallet.settle, daemon=True) for wallet in self.wallets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SETTLE_WAIT_S + REQUEST_TIMEOUT_S)

    @property
    def client_ids(self) -> list[str]:
        return [wallet.client_id for wallet in self.wallets]
