"""The TigerBeetle data model (design.md, "TigerBeetle data model"), in one place, free of Django.

What every module that speaks to TigerBeetle agrees on: the transfer codes, the wallet
account's flags, the accounts and transfers of each wallet operation (credit, debit, void,
the backfill's imported accounts and opening pair), the balance formula, and the query
filters with TigerBeetle's zero defaults ("no condition"). The TigerBeetle store posts these,
the mirror replays the same ones from MongoDB's outbox, the backfill imports them, and the
reconciliation and support pages read them back; one definition means they cannot drift.

A deployment's place on a cluster it may share is its `LedgerScope`: the namespace its ids
derive in (`domain.ids.IdSpace`, TB_ID_NAMESPACE) and the codes that mark its accounts
(`AccountCodes`: TB_WALLET_ACCOUNT_CODE, TB_SYSTEM_ACCOUNT_CODE, TB_LIMIT_ACCOUNT_CODE). The
process wiring reads them once, at start-up, and every builder here takes what it needs of
them as an argument.

The balance limit (BALANCE_MINOR_MAX on a wallet's credits, its historical credit) is enforced
by TigerBeetle itself, atomically, by a *limit reservation* (`limit_reservation`): one pending
transfer of LIMIT_RESERVATION_AMOUNT = 2^128-1-BALANCE_MINOR_MAX to the wallet from its own
limit account (`wallet_limit_account`), never posted nor voided. It holds the wallet's
credits_pending there for good, so a transfer that credits the wallet overflows
(`overflows_credits`) exactly when the wallet's credits, the transfer included, would exceed
BALANCE_MINOR_MAX, and posts nothing; two credits racing at the limit are serialised by the
cluster, so at most one of them posts. Each wallet needs an account of its own for it: a
reservation fills its debit account's 128-bit debits_pending. The reservation carries
TRANSFER_CODE_LIMIT_RESERVATION and moves no posted amount.

Wallets credited before reservations had their credits posted in a linked chain with a *limit
probe* (a pending transfer of the same amount from the ledger's probe account, and its void,
TRANSFER_CODE_LIMIT_PROBE); the store reserves such a wallet's limit before its next credit.
Histories and listings leave both kinds out (`is_limit_bookkeeping`, `posted_balance_changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tigerbeetle import (
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
)

from domain.countries import country_numeric
from domain.ids import IdSpace, WalletKey
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import WalletBalance

TRANSFER_CODE_CREDIT = 1
TRANSFER_CODE_DEBIT = 2
TRANSFER_CODE_VOID = 3
TRANSFER_CODE_OPENING_BALANCE = 4
TRANSFER_CODE_LIMIT_PROBE = 5  # wallets credited before reservations: kept out of histories
TRANSFER_CODE_LIMIT_RESERVATION = 6
TRANSFER_CODE_HOLD = 7  # a hold's pending transfer; its capture or release inherits it
U128_MAX = 2**128 - 1
# Held pending on a wallet's credits, this leaves room for exactly BALANCE_MINOR_MAX posted.
LIMIT_RESERVATION_AMOUNT = U128_MAX - BALANCE_MINOR_MAX
# A wallet never goes below zero, and keeps its balance after every transfer (replays and
# the support page read it back).
WALLET_ACCOUNT_FLAGS = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY
# Combined once: an enum flag's `|` costs 2 us, and the backfill imports a page's accounts.
IMPORTED_WALLET_ACCOUNT_FLAGS = WALLET_ACCOUNT_FLAGS | AccountFlags.IMPORTED

# --- accounts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountCodes:
    """The codes that mark this application's accounts on a shared cluster: its wallet
    accounts (reconciliation looks at no others), the ledgers' system accounts and the wallets'
    limit accounts. Deployment settings, immutable once accounts exist."""

    wallet: int
    system: int
    limit: int


@dataclass(frozen=True, slots=True)
class LedgerScope:
    """A deployment's place on a cluster it may share: the namespace its ids derive in and
    the codes that mark its accounts. Two deployments (or two tests) with different scopes
    never derive the same id nor read each other's wallets."""

    ids: IdSpace
    codes: AccountCodes


# The bits of a wallet account's user_data_32 the country's numeric code takes (ISO 3166
# numeric codes stop below 1000); the deployment stamp sits above them.
COUNTRY_BITS = 10


def system_account(ledger: int, *, scope: LedgerScope) -> Account:
    """A ledger's system (funding) account: the other side of every credit and debit."""
    return Account(id=scope.ids.system_account_id(ledger), ledger=ledger, code=scope.codes.system)


def wallet_limit_account(wallet_account_id: int, *, ledger: int, scope: LedgerScope) -> Account:
    """A wallet's limit account: the debit side of its limit reservation, and of nothing else
    (user_data_128 names the wallet's account)."""
    return Account(
        id=scope.ids.limit_account_id(wallet_account_id),
        user_data_128=wallet_account_id,
        ledger=ledger,
        code=scope.codes.limit,
    )


def wallet_user_data_32(country: str, *, ids: IdSpace) -> int:
    """A wallet account's user_data_32: the deployment's stamp above the country's ISO 3166
    numeric code (below 1000: COUNTRY_BITS)."""
    return ids.deployment_stamp() << COUNTRY_BITS | country_numeric(country)


def deployment_stamp_of(account: Account) -> int:
    """The deployment stamp of a wallet account; 0 on one created before stamps."""
    return int(account.user_data_32) >> COUNTRY_BITS


def of_deployment(account: Account, *, ids: IdSpace) -> bool:
    """Whether a wallet account is this deployment's: its stamp, or none (created before
    stamps, by whichever deployment: counted as this one's, as they always were)."""
    return deployment_stamp_of(account) in (0, ids.deployment_stamp())


def wallet_account(key: WalletKey, *, account_id: int, ledger: int, scope: LedgerScope) -> Account:
    """The wallet's account (`account_id`: `scope.ids.account_id(key, nonce=...)`): its fields
    encode the whole key, so TigerBeetle itself reports an id that belongs to another wallet
    (`exists_with_different_*`), and the deployment's stamp (`wallet_user_data_32`)."""
    return Account(
        id=account_id,
        user_data_128=scope.ids.client_hash_128(key.client_id),
        user_data_64=scope.ids.issuer_hash_64(key.issuer),
        user_data_32=wallet_user_data_32(key.country, ids=scope.ids),
        ledger=ledger,
        code=scope.codes.wallet,
        flags=WALLET_ACCOUNT_FLAGS,
    )


def imported_system_account(ledger: int, *, scope: LedgerScope, timestamp: int) -> Account:
    """A ledger's system account, imported by the backfill at `timestamp`."""
    account = system_account(ledger, scope=scope)
    account.flags = AccountFlags.IMPORTED
    account.timestamp = timestamp
    return account


def imported_wallet_account(
    key: WalletKey, *, account_id: int, ledger: int, scope: LedgerScope
) -> Account:
    """A legacy wallet's account, to import; `stamp_import` gives it its timestamp."""
    account = wallet_account(key, account_id=account_id, ledger=ledger, scope=scope)
    account.flags = IMPORTED_WALLET_ACCOUNT_FLAGS
    return account


# --- transfers -----------------------------------------------------------------------------


def credit_transfer(
    transaction_id: str, *, ids: IdSpace, tb_account_id: int, ledger: int, amount_minor: int
) -> Transfer:
    """System account -> wallet: the transfer of a credit (its id derives from the client's)."""
    return Transfer(
        id=ids.transaction_transfer_id(transaction_id),
        debit_account_id=ids.system_account_id(ledger),
        credit_account_id=tb_account_id,
        amount=amount_minor,
        ledger=ledger,
        code=TRANSFER_CODE_CREDIT,
    )


def debit_transfer(
    reference_id: str, *, ids: IdSpace, tb_account_id: int, ledger: int, amount_minor: int
) -> Transfer:
    """Wallet -> system account: the transfer of a debit (the same id a credit on
    `reference_id` would have: one namespace, so TigerBeetle refuses the second of them)."""
    return Transfer(
        id=ids.transaction_transfer_id(reference_id),
        debit_account_id=tb_account_id,
        credit_account_id=ids.system_account_id(ledger),
        amount=amount_minor,
        ledger=ledger,
        code=TRANSFER_CODE_DEBIT,
    )


def void_transfer(
    voided_tb_transfer_id: int,
    *,
    ids: IdSpace,
    voided_credit: bool,
    tb_account_id: int,
    ledger: int,
    amount_minor: int,
    attempt: int,
) -> Transfer:
    """The compensating transfer of a void, pointing at the voided one in user_data_128."""
    system_id = ids.system_account_id(ledger)
    return Transfer(
        id=ids.void_transfer_id(voided_tb_transfer_id, attempt=attempt),
        debit_account_id=tb_account_id if voided_credit else system_id,
        credit_account_id=system_id if voided_credit else tb_account_id,
        amount=amount_minor,
        user_data_128=voided_tb_transfer_id,
        ledger=ledger,
        code=TRANSFER_CODE_VOID,
    )


def limit_reservation(wallet_account_id: int, *, ids: IdSpace, ledger: int) -> Transfer:
    """The wallet's limit reservation: pending for good (no timeout) from its limit account,
    so its credits can never exceed BALANCE_MINOR_MAX. Its id is the wallet's, so reserving
    twice answers `exists`; it fails (`overflows_credits`) only on a wallet already past
    the limit."""
    return Transfer(
        id=ids.limit_reservation_transfer_id(wallet_account_id),
        debit_account_id=ids.limit_account_id(wallet_account_id),
        credit_account_id=wallet_account_id,
        amount=LIMIT_RESERVATION_AMOUNT,
        ledger=ledger,
        code=TRANSFER_CODE_LIMIT_RESERVATION,
        flags=TransferFlags.PENDING,
    )


def hold_transfer(
    hold_id: str,
    *,
    ids: IdSpace,
    tb_account_id: int,
    ledger: int,
    amount_minor: int,
    timeout_s: int,
) -> Transfer:
    """Wallet -> system account, pending for `timeout_s`: a hold. `debits_must_not_exceed_credits`
    counts pending debits, so the held amount leaves the wallet's available credit at once, and
    the cluster voids it by itself when the timeout passes."""
    assert timeout_s > 0, "a hold without a timeout would never expire"
    return Transfer(
        id=ids.hold_transfer_id(hold_id),
        debit_account_id=tb_account_id,
        credit_account_id=ids.system_account_id(ledger),
        amount=amount_minor,
        ledger=ledger,
        code=TRANSFER_CODE_HOLD,
        timeout=timeout_s,
        flags=TransferFlags.PENDING,
    )


def hold_resolution(
    hold_tb_transfer_id: int, *, ids: IdSpace, capture_minor: int | None
) -> Transfer:
    """A hold's capture (`capture_minor`: post that much, the rest goes back) or its release
    (None: void). Accounts, ledger and code are the pending transfer's (0 inherits them)."""
    if capture_minor is None:
        flags, amount = TransferFlags.VOID_PENDING_TRANSFER, 0
    else:
        assert capture_minor > 0, "the service refuses captures that are not positive"
        flags, amount = TransferFlags.POST_PENDING_TRANSFER, capture_minor
    return Transfer(
        id=ids.hold_resolution_transfer_id(hold_tb_transfer_id),
        pending_id=hold_tb_transfer_id,
        amount=amount,
        flags=flags,
    )


def hold_late_capture(
    hold_tb_transfer_id: int, *, ids: IdSpace, tb_account_id: int, ledger: int, amount_minor: int
) -> Transfer:
    """A hold's capture as a plain debit wallet -> system account (code 7): what the mirror
    posts for a capture MongoDB took before its expiry when the cluster's timeout voided the
    pending transfer first. Never imported, never a post or void of a pending transfer."""
    assert amount_minor > 0, "a capture moves a positive amount"
    return Transfer(
        id=ids.hold_late_capture_transfer_id(hold_tb_transfer_id),
        debit_account_id=tb_account_id,
        credit_account_id=ids.system_account_id(ledger),
        amount=amount_minor,
        ledger=ledger,
        code=TRANSFER_CODE_HOLD,
    )


def is_limit_bookkeeping(transfer: Transfer) -> bool:
    """A limit reservation, or an older limit probe or its void: bookkeeping of the balance
    limit, never a wallet's transaction."""
    return transfer.code in (TRANSFER_CODE_LIMIT_RESERVATION, TRANSFER_CODE_LIMIT_PROBE)


def posted_balance_changes(
    snapshots: list[AccountBalance], *, whole_history: bool
) -> list[AccountBalance]:
    """The snapshots (an account's history, newest first) of transfers that moved posted
    amounts: every transaction of a wallet moves a positive amount, and the limit's
    bookkeeping (a reservation, an older probe or its void) moves none, so a snapshot is kept
    when its posted amounts differ from the snapshot before it. The oldest snapshot given has
    none before it: when it is the account's first (`whole_history`), it is kept if anything
    is posted; otherwise it is left out, so callers ask for one more than they keep."""
    kept: list[AccountBalance] = []
    for index, snapshot in enumerate(snapshots):
        posted = (snapshot.credits_posted, snapshot.debits_posted)
        if index + 1 < len(snapshots):
            older = snapshots[index + 1]
            if posted != (older.credits_posted, older.debits_posted):
                kept.append(snapshot)
        elif whole_history and posted != (0, 0):
            kept.append(snapshot)
    return kept


def opening_debit_transfer_id(account_id: int, *, ids: IdSpace) -> int:
    """Second transfer of the opening pair (the first is `opening_balance_transfer_id`)."""
    return ids.opening_balance_transfer_id(account_id) ^ 1


def opening_amounts(balance: WalletBalance) -> tuple[int, int]:
    """What a legacy wallet's opening pair posts: (credits, debits) = (every credit it ever
    had, credit + debit; its debits). The registry keeps them (reconciliation's transfer pass
    explains the account with them)."""
    return balance.credit_minor + balance.debit_minor, balance.debit_minor


def opening_pair(
    balance: WalletBalance,
    *,
    ids: IdSpace,
    wallet_seq: int,
    created_ms: int,
    account_id: int,
    system_id: int,
    ledger: int,
) -> list[Transfer]:
    """A legacy wallet's imported opening balance: every credit it ever had (credit + debit)
    in, then its debits out (`stamp_import` times them); either is left out when zero, so
    credits_posted / debits_posted give the legacy store's three fields. Both carry the
    `wallet_seq` the balance stands at (user_data_128) and the wallet's original creation
    time in Unix ms (user_data_64). Not yet linked: the caller chains the page's pairs.
    `system_id` is the ledger's `system_account_id`, hashed once per page by the caller."""
    credits, debits = opening_amounts(balance)
    credit_id = ids.opening_balance_transfer_id(account_id)  # hashed once for both
    pair: list[Transfer] = []
    if credits:
        pair.append(
            Transfer(
                id=credit_id,
                debit_account_id=system_id,
                credit_account_id=account_id,
                amount=credits,
                user_data_128=wallet_seq,
                user_data_64=created_ms,
                ledger=ledger,
                code=TRANSFER_CODE_OPENING_BALANCE,
                flags=TransferFlags.IMPORTED,
            )
        )
    if debits:
        pair.append(
            Transfer(
                id=credit_id ^ 1,  # opening_debit_transfer_id
                debit_account_id=account_id,
                credit_account_id=system_id,
                amount=debits,
                user_data_128=wallet_seq,
                user_data_64=created_ms,
                ledger=ledger,
                code=TRANSFER_CODE_OPENING_BALANCE,
                flags=TransferFlags.IMPORTED,
            )
        )
    return pair


def stamp_import(account: Account, pair: Sequence[Transfer], *, timestamp: int) -> int:
    """Time a wallet's import: its account at `timestamp` (its creation or just after), its
    opening pair 1 and 2 ns after it. The last timestamp the import takes."""
    account.timestamp = timestamp
    for offset, transfer in enumerate(pair, start=1):
        transfer.timestamp = timestamp + offset
    return timestamp + 2


# --- the balance formula -------------------------------------------------------------------


def wallet_balance(
    key: WalletKey,
    *,
    credits_posted: int,
    debits_posted: int,
    debits_pending: int = 0,
    as_of_tb_timestamp: int | None = None,
) -> WalletBalance:
    """design.md's balance fields: available (credit) = credits - debits - held, spent
    (debit) = debits, total received (historical credit) = credits, held = the wallet's
    pending debits (its open holds; nothing else debits a wallet pending)."""
    return WalletBalance(
        key=key,
        credit_minor=credits_posted - debits_posted - debits_pending,
        debit_minor=debits_posted,
        historical_credit_minor=credits_posted,
        as_of_tb_timestamp=as_of_tb_timestamp,
        held_minor=debits_pending,
    )


def balance_from_account(key: WalletKey, account: Account) -> WalletBalance:
    """The wallet's balance now, from its account."""
    return wallet_balance(
        key,
        credits_posted=account.credits_posted,
        debits_posted=account.debits_posted,
        debits_pending=account.debits_pending,
    )


def balance_from_snapshot(key: WalletKey, snapshot: AccountBalance) -> WalletBalance:
    """The wallet's balance after one transfer, from the account's history."""
    return wallet_balance(
        key,
        credits_posted=snapshot.credits_posted,
        debits_posted=snapshot.debits_posted,
        debits_pending=snapshot.debits_pending,
        as_of_tb_timestamp=snapshot.timestamp,
    )


# --- queries (0 is TigerBeetle's "no condition") -------------------------------------------


def history_filter(
    tb_account_id: int,
    *,
    limit: int,
    timestamp_min: int = 0,
    timestamp_max: int = 0,
    newest_first: bool = True,
) -> AccountFilter:
    """get_account_transfers / get_account_balances over both sides of one account."""
    flags = AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS
    if newest_first:
        flags |= AccountFilterFlags.REVERSED
    return AccountFilter(
        account_id=tb_account_id,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        code=0,
        timestamp_min=timestamp_min,
        timestamp_max=timestamp_max,
        limit=limit,
        flags=flags,
    )


def accounts_filter(
    *,
    code: int,
    limit: int,
    client_hash: int = 0,
    timestamp_min: int = 0,
) -> QueryFilter:
    """query_accounts over accounts of one code, oldest first: a client's wallets
    (`client_hash` = its user_data_128), or every wallet paged from `timestamp_min`."""
    return QueryFilter(
        user_data_128=client_hash,
        user_data_64=0,
        user_data_32=0,
        ledger=0,
        code=code,
        timestamp_min=timestamp_min,
        timestamp_max=0,
        limit=limit,
        flags=QueryFilterFlags.NONE,
    )


def latest_event_filter() -> QueryFilter:
    """query_accounts / query_transfers for the single newest event of the whole cluster."""
    return QueryFilter(
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        ledger=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=1,
        flags=QueryFilterFlags.REVERSED,
    )
