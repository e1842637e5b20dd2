"""Client traffic at a steady rate through the HTTP API, with a tally of what was acknowledged.

Every tick (1 / writes-per-second) one write and one read start on a thread pool, so a slow
answer never slows the rate. Writes: credits and debits on legacy and new wallets, voids of
earlier acknowledged writes, and holds in every phase: most captured or released at once, some
left open for a later tick to capture or release, so holds stay open across the phase changes
and the backfill's snapshots (a legacy wallet's open holds are carried by its import:
docs/holds.md) and at the end, where the audit counts them in both stores. A 503 (`writes_paused`,
`store_unavailable`) or a lost connection is sent again with the same id until it is answered;
the time between the first 503 and the answer is the write's pause. A read answered 503, or
not answered in REQUEST_TIMEOUT_S, is asked again too, as a client would (the API's 503s say a
dependency did not answer in time), and its sample is the whole wait; every request that had
to be asked again is counted by how its first try ended (`Tally.asked_again`: the 503's code,
or no answer), and one still unanswered after ANSWER_WAIT_S is an unexpected answer. Each
sample is tagged with the `label` current when it started (the phase of the walk).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from domain.ids import WalletKey
from domain.money import from_minor_units

POOL_THREADS = 32
# How long a request is asked again through 503s and lost answers before it counts as failed:
# longer than the embedded MongoDB server's longest stall seen under the moonshot (3.5 min).
ANSWER_WAIT_S = 600.0
REQUEST_TIMEOUT_S = 30.0
HOLD_EXPIRES_IN_S = 600
# A hold left open outlives the run (the tally does not expect an expiry).
LEFT_OPEN_EXPIRES_IN_S = 86_400
LEFT_OPEN_SHARE = 0.5  # of holds placed: left open for a later hold tick
RESOLVE_LEFT_OPEN_SHARE = 0.2  # of hold ticks with a hold left open: resolve one instead
LEFT_OPEN_MAX = 200  # open at once
NEW_WALLETS = 200
# The mix: a roll under HOLD_SHARE is a hold (while allowed), then `void_share` voids, credits
# up to CREDIT_BELOW, debits above (a skipped hold or void is a credit).
HOLD_SHARE = 0.15
VOID_SHARE = 0.10
CREDIT_BELOW = 0.65


@dataclass
class Sample:
    label: str
    kind: str  # "write" or "read"
    latency_s: float  # a write: the answered request's own time; a read: the whole wait
    paused: bool = False  # answered after one or more writes_paused 503s
    paused_s: float = 0.0


@dataclass
class Write:
    key: WalletKey
    kind: str  # credit, debit, capture, hold (open)
    amount_minor: int
    label: str = ""  # the step it was sent in


class Tally:
    """What the API acknowledged: each wallet's expected change (credit, debit, historical
    credit) in minor units, and the acknowledged ids."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.writes: dict[str, Write] = {}
        self.voided: set[str] = set()
        self.voiding: set[str] = set()
        self.delta: dict[WalletKey, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.refused: Counter[str] = Counter()
        # Each void asked for (a refused one may be asked again later): the steps it was in.
        self.void_requests: dict[str, list[str]] = defaultdict(list)
        self.unexpected: Counter[str] = Counter()
        # Requests answered only when asked again, by kind and how the first try ended.
        self.asked_again: Counter[str] = Counter()
        # Holds placed (what each reserved), those left open and not yet taken for a
        # capture or release, and what each wallet's open holds reserve: the `held` both
        # stores must show at the end.
        self.placed_holds: dict[str, Write] = {}
        self.open_holds: dict[str, Write] = {}
        self.held: dict[WalletKey, int] = defaultdict(int)
        self._pick_open = random.Random(23)

    def hold_placed(self, hold_id: str, write: Write, *, left_open: bool) -> None:
        with self.lock:
            self.placed_holds[hold_id] = write
            if left_open:
                self.open_holds[hold_id] = write
                self.held[write.key] += write.amount_minor

    def take_open_hold(self) -> str | None:
        """A hold left open, to capture or release now: no longer counted as held (None
        without one)."""
        with self.lock:
            if not self.open_holds:
                return None
            hold_id = self._pick_open.choice(list(self.open_holds))
            write = self.open_holds.pop(hold_id)
            self.held[write.key] -= write.amount_minor
            return hold_id

    def acknowledge(self, transaction_id: str, write: Write) -> None:
        with self.lock:
            self.writes[transaction_id] = write
            change = self.delta[write.key]
            if write.kind == "credit":
                change[0] += write.amount_minor
                change[2] += write.amount_minor
            else:  # a debit, or a hold's capture: a debit of what was captured
                change[0] -= write.amount_minor
                change[1] += write.amount_minor

    def void_candidate(self, pick: random.Random) -> str | None:
        with self.lock:
            open_ids = [
                i
                for i, w in list(self.writes.items())[-200:]
                if w.kind in ("credit", "debit") and i not in self.voided | self.voiding
            ]
            if not open_ids:
                return None
            chosen = pick.choice(open_ids)
            self.voiding.add(chosen)
            return chosen

    def acknowledge_void(self, transaction_id: str) -> None:
        """A voided credit is a compensating debit; a voided debit a compensating credit."""
        with self.lock:
            self.voiding.discard(transaction_id)
            self.voided.add(transaction_id)
            write = self.writes[transaction_id]
            change = self.delta[write.key]
            if write.kind == "credit":
                change[0] -= write.amount_minor
                change[1] += write.amount_minor
            else:
                change[0] += write.amount_minor
                change[2] += write.amount_minor

    def story(self, transaction_id: str) -> str:
        """What the traffic did with a transaction: for a difference the jobs report."""
        write = self.writes.get(transaction_id)
        sent = f"{write.kind} of {write.amount_minor} in {write.label!r}" if write else "not ours"
        voids = self.void_requests.get(transaction_id, [])
        return f"{transaction_id}: {sent}; void asked {len(voids)}x in {voids}"

    def expected(self, key: WalletKey, opening: tuple[int, int]) -> tuple[int, int, int]:
        """(credit, debit, historical credit) from an opening (credit, debit) and the tally."""
        credit, debit = opening
        change = self.delta.get(key, [0, 0, 0])
        return credit + change[0], debit + change[1], credit + debit + change[2]


class Traffic:
    """Writes and reads at `writes_per_s` each on `legacy` keys and on new wallets."""

    def __init__(
        self,
        base: str,
        *,
        authorization: str,
        writes_per_s: float,
        legacy: list[WalletKey],
        new: list[WalletKey],
        void_share: float = VOID_SHARE,
    ) -> None:
        self.base, self.authorization = base, authorization
        self.interval_s = 1 / writes_per_s
        self.legacy, self.new = legacy, new
        self.void_share = void_share
        self.label = "before"
        self.tally = Tally()
        self.samples: list[Sample] = []
        self._samples_lock = threading.Lock()
        self._pick = random.Random(25)
        self._pick_lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(POOL_THREADS)
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join()
        # Ticks the pool could not start in time are dropped, not sent late (`started`
        # counts what was sent: the rate achieved).
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _tick(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._guarded, self._write)
            self._pool.submit(self._guarded, self._read)
            next_s += self.interval_s
            self._stop.wait(max(0.0, next_s - time.monotonic()))

    def _guarded(self, operation: Any) -> None:
        try:
            operation()
        except Exception as exc:  # a harness bug must show, not kill the pool's thread
            self.tally.unexpected[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["Authorization"] = self.authorization
        return session

    def _choose(self) -> tuple[float, WalletKey, int]:
        with self._pick_lock:
            roll = self._pick.random()
            keys = self.legacy if self._pick.random() < 0.5 else self.new
            return roll, self._pick.choice(keys), self._pick.randint(1, 50)

    def _write(self) -> None:
        roll, key, amount_minor = self._choose()
        label = self.label
        if roll < HOLD_SHARE:
            self._hold(label, key, amount_minor)
        elif HOLD_SHARE <= roll < HOLD_SHARE + self.void_share:
            candidate = self.tally.void_candidate(self._pick)
            if candidate is None:
                self._credit_or_debit(label, key, amount_minor, "credit")
            else:
                self._void(candidate, label=label)
        elif roll < CREDIT_BELOW:
            self._credit_or_debit(label, key, amount_minor, "credit")
        else:
            self._credit_or_debit(label, key, amount_minor, "debit")

    def _credit_or_debit(self, label: str, key: WalletKey, amount_minor: int, kind: str) -> None:
        transaction_id = f"{kind}-{uuid.uuid4().hex}"
        id_field = "transaction_id" if kind == "credit" else "reference_id"
        body = {id_field: transaction_id, "amount": amount(key, amount_minor)}
        answer, _ = self._post(f"{wallet_path(key)}/{kind}s", body, label=label)
        # 200: a replay, after a 503 or a lost answer whose write had landed.
        if answer.status_code in (200, 201):
            self.tally.acknowledge(transaction_id, Write(key, kind, amount_minor, label))
        else:
            self._refused(kind, answer)

    def _void(self, transaction_id: str, *, label: str) -> None:
        with self.tally.lock:
            self.tally.void_requests[transaction_id].append(label)
        answer, retried = self._post(
            f"/api/transactions/{transaction_id}/void", {"reason": "bench"}, label=label
        )
        # A void is not replayed: sent again after a 503 or a lost answer whose void had
        # landed, it answers 409 already_voided (the traffic never voids one twice).
        landed_before = retried and error_code(answer) == "already_voided"
        if answer.status_code == 200 or landed_before:
            self.tally.acknowledge_void(transaction_id)
        else:
            with self.tally.lock:
                self.tally.voiding.discard(transaction_id)
            self._refused("void", answer)

    def _hold(self, label: str, key: WalletKey, amount_minor: int) -> None:
        """Capture or release a hold left open (RESOLVE_LEFT_OPEN_SHARE of the ticks that
        find one), or place a hold: left open (LEFT_OPEN_SHARE, up to LEFT_OPEN_MAX at once)
        or captured or released at once."""
        with self._pick_lock:
            resolve_left_open = self._pick.random() < RESOLVE_LEFT_OPEN_SHARE
            leave_open = self._pick.random() < LEFT_OPEN_SHARE
        if resolve_left_open and (left_open := self.tally.take_open_hold()) is not None:
            self._resolve(left_open, label=label)
            return
        leave_open = leave_open and len(self.tally.open_holds) < LEFT_OPEN_MAX
        hold_id = f"hold-{uuid.uuid4().hex}"
        body: dict[str, Any] = {"hold_id": hold_id, "amount": amount(key, amount_minor)}
        body["expires_in_s"] = LEFT_OPEN_EXPIRES_IN_S if leave_open else HOLD_EXPIRES_IN_S
        answer, _ = self._post(f"{wallet_path(key)}/holds", body, label=label)
        if answer.status_code not in (200, 201):  # 200: a replay of a hold that had landed
            self._refused("hold", answer)
            return
        self.tally.hold_placed(
            hold_id, Write(key, "hold", amount_minor, label), left_open=leave_open
        )
        if not leave_open:
            self._resolve(hold_id, label=label)

    def _resolve(self, hold_id: str, *, label: str) -> None:
        """Capture all of a hold (an even amount) or release it (an odd one)."""
        write = self.tally.placed_holds[hold_id]
        capture = write.amount_minor % 2 == 0
        action = "capture" if capture else "release"
        answer, _ = self._post(f"/api/holds/{hold_id}/{action}", {}, label=label)
        if answer.status_code not in (200, 201):  # 201: the capture or release made now
            self._refused(action, answer)
        elif capture:
            self.tally.acknowledge(hold_id, Write(write.key, "capture", write.amount_minor, label))

    def _refused(self, kind: str, answer: requests.Response) -> None:
        code = error_code(answer)
        expected = code in ("insufficient_funds", "void_would_overdraw", "wallet_not_found")
        counter = self.tally.refused if expected else self.tally.unexpected
        counter[f"{kind} {answer.status_code} {code}"] += 1

    def _post(
        self, path: str, body: dict[str, Any], *, label: str
    ) -> tuple[requests.Response, bool]:
        """POST until answered other than 503; the sample is the answered request's time.
        Also whether it was sent more than once (a 503 or no answer before), so the write may
        have landed on an earlier try."""
        session = self._session()
        first_503_s: float | None = None
        first_code = ""
        paused = retried = False
        deadline = time.monotonic() + ANSWER_WAIT_S
        while True:
            started = time.perf_counter()
            try:
                answer = session.post(self.base + path, json=body, timeout=REQUEST_TIMEOUT_S)
            except requests.RequestException as exc:
                answer = None
                first_code = first_code or no_answer(exc)
            latency_s = time.perf_counter() - started
            if answer is not None and answer.status_code != 503:
                paused_s = time.perf_counter() - first_503_s if first_503_s else 0.0
                self._sample(Sample(label, "write", latency_s, paused, paused_s))
                if first_code:
                    self.tally.asked_again[f"write {first_code}"] += 1
                return answer, retried
            retried = True
            if answer is not None:
                first_503_s = first_503_s or started
                first_code = first_code or f"503 {error_code(answer)}"
                paused = paused or error_code(answer) == "writes_paused"
            if time.monotonic() > deadline:
                raise RuntimeError(f"POST {path}: only 503s or no answer for {ANSWER_WAIT_S} s")
            time.sleep(0.05)

    def _read(self) -> None:
        _, key, _ = self._choose()
        label = self.label
        started = time.perf_counter()
        deadline = time.monotonic() + ANSWER_WAIT_S
        first_code = ""
        while True:
            try:
                answer = self._session().get(
                    self.base + wallet_path(key), timeout=REQUEST_TIMEOUT_S
                )
            except requests.RequestException as exc:
                if time.monotonic() > deadline:
                    raise
                first_code = first_code or no_answer(exc)
            else:
                if answer.status_code != 503 or time.monotonic() > deadline:
                    break
                first_code = first_code or f"503 {error_code(answer)}"
            time.sleep(0.05)  # a refused connection is not asked again in a tight loop
        latency_s = time.perf_counter() - started
        if answer.status_code not in (200, 404):
            self.tally.unexpected[f"read {answer.status_code} {error_code(answer)}"] += 1
            return
        if first_code:
            self.tally.asked_again[f"read {first_code}"] += 1
        self._sample(Sample(label, "read", latency_s))

    def _sample(self, sample: Sample) -> None:
        with self._samples_lock:
            self.samples.append(sample)


def no_answer(exc: requests.RequestException) -> str:
    """How a request that got no answer is counted among those asked again."""
    if isinstance(exc, requests.Timeout):
        return f"no answer in {REQUEST_TIMEOUT_S:.0f} s"
    return f"no answer ({type(exc).__name__})"


def wallet_path(key: WalletKey) -> str:
    return f"/api/clients/{key.client_id}/wallets/{key.country}/{key.currency}"


def amount(key: WalletKey, amount_minor: int) -> str:
    return str(from_minor_units(amount_minor, key.currency))


def error_code(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("error", {}).get("code", ""))
    except ValueError:
        return ""
