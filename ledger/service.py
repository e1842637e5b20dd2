"""The wallet service: the seed's five operations (plus reading one transaction).

It validates and normalises what a client sends (country, currency, amount -> minor units)
and hands the operation to the store it is given. Which store that is (settings'
`WALLET_STORE`; by default the phased store, which routes each operation by the migration
phase) is the process wiring's choice: `wallet_site.wiring.wallet_service()`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from domain import errors
from domain.batches import (
    BATCH_ITEMS_MAX,
    BatchItem,
    BatchItemKind,
    BatchOutcome,
    item_kind,
    refused_at,
)
from domain.countries import UnknownCountry as UnknownCountryCode
from domain.countries import normalize_country
from domain.history import HistoryPage
from domain.holds import HOLD_TIMEOUT_MAX_S, HOLD_TIMEOUT_MIN_S, Hold, HoldResult
from domain.ids import WalletKey
from domain.money import MoneyError, normalize_currency, to_minor_units
from domain.statements import Statement
from domain.wallets import TransactionRecord, WalletBalance, WalletResult, WalletStore
from ledger.history_query import history_query
from ledger.statements import statement_period, wallet_statement

ID_MAX_LENGTH = 128
# Unicode categories no id may hold: control characters (NUL, C0, DEL, C1), invisible format
# characters (zero-width joiners, bidi overrides), lone surrogates, line/paragraph separators.
ID_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# And "/": an id must be one URL path segment (servers decode %2F before routing).
ID_FORBIDDEN_CHARACTERS = frozenset("/")
# An id of printable ASCII other than "/", neither starting nor ending with a space, within
# the length: what every rule below allows, checked in one step (a batch checks 8,189 ids).
_PLAIN_ID = re.compile(rf"[!-.0-~](?:[ -.0-~]{{0,{ID_MAX_LENGTH - 2}}}[!-.0-~])?")
# A currency with the most decimal places (3): a batch's capture amount is checked against
# it before its hold's currency is known (`_check_capture_amount`).
_WIDEST_CURRENCY = "BHD"


def wallet_key(
    *, client_id: str, country: str, currency: str, issuer: str | None = None
) -> WalletKey:
    """A validated, normalised wallet key (alpha-3 country, upper-case currency)."""
    client_id = checked_id(client_id, field="client_id")
    try:
        country_code = normalize_country(country)
    except UnknownCountryCode as exc:
        raise errors.UnknownCountry(f"Unknown country {country!r}.", field="country") from exc
    try:
        currency_code = normalize_currency(currency)
    except MoneyError as exc:
        raise errors.UnknownCurrency(f"Unknown currency {currency!r}.", field="currency") from exc
    issuer = checked_id(issuer, field="issuer") if issuer else None
    return WalletKey(
        client_id=client_id, country=country_code, currency=currency_code, issuer=issuer
    )


def amount_minor_of(amount: Decimal | str, currency: str) -> int:
    """Minor units of a positive amount; refuses, never rounds."""
    try:
        return to_minor_units(amount, currency)
    except MoneyError as exc:
        if exc.code == "unknown_currency":
            raise errors.UnknownCurrency(str(exc), field="currency") from exc
        raise errors.InvalidAmount(str(exc), field="amount") from exc


def _check_same_currency(key: WalletKey, amount_currency: str | None) -> None:
    """Money stated in one currency never lands in a wallet of another (no implicit FX)."""
    if not amount_currency:
        return
    try:
        stated = normalize_currency(amount_currency)
    except MoneyError as exc:
        raise errors.UnknownCurrency(
            f"Unknown currency {amount_currency!r}.", field="currency"
        ) from exc
    if stated != key.currency:
        raise errors.CrossCurrency(
            f"The amount is in {stated}; wallet {key.describe()} holds {key.currency}.",
            field="currency",
        )


def checked_id(value: str, *, field: str) -> str:
    """The one rule for every id a client sends (client id, issuer, transaction and
    reference ids), from the path, the query or the body: 1 to ID_MAX_LENGTH characters,
    no surrounding whitespace, no '/' (an id must be addressable as one URL path segment,
    and servers decode %2F before routing), no control, format or separator characters
    (NUL and friends break databases and logs, invisible ones fool support staff)."""
    if isinstance(value, str) and _PLAIN_ID.fullmatch(value):
        return value  # the common case, decided at once: printable ASCII, no "/"
    if not isinstance(value, str) or not value or not value.strip():
        raise errors.ValidationFailed(f"{field} must not be empty.", field=field)
    if len(value) > ID_MAX_LENGTH:
        raise errors.ValidationFailed(
            f"{field} is longer than {ID_MAX_LENGTH} characters.", field=field
        )
    if value != value.strip():
        raise errors.ValidationFailed(
            f"{field} must not start or end with whitespace.", field=field
        )
    for character in value:
        if (
            character in ID_FORBIDDEN_CHARACTERS
            or unicodedata.category(character) in ID_FORBIDDEN_CATEGORIES
        ):
            raise errors.ValidationFailed(
                f"{field} must not contain {unicodedata.name(character, repr(character))}"
                f" (U+{ord(character):04X}).",
                field=field,
            )
    return value


class WalletService:
    """The operations REST clients and support staff use, over the primary store."""

    def __init__(self, store: WalletStore) -> None:
        self._store = store

    def primary_store(self) -> WalletStore:
        return self._store

    def add_credit(
        self,
        *,
        client_id: str,
        country: str,
        currency: str,
        amount: Decimal | str,
        transaction_id: str,
        issuer: str | None = None,
        amount_currency: str | None = None,
        made_by: str = "",
    ) -> WalletResult:
        """Keyword-only: the wallet key's three strings and the ids read alike, and a swap
        would credit another wallet. `made_by`: the authenticated principal, kept with the
        transaction."""
        key = wallet_key(client_id=client_id, country=country, currency=currency, issuer=issuer)
        _check_same_currency(key, amount_currency)
        amount_minor = amount_minor_of(amount, key.currency)
        transaction_id = checked_id(transaction_id, field="transaction_id")
        return self.primary_store().add_credit(key, amount_minor, transaction_id, made_by=made_by)

    def subtract_credit(
        self,
        *,
        client_id: str,
        country: str,
        currency: str,
        amount: Decimal | str,
        reference_id: str,
        issuer: str | None = None,
        amount_currency: str | None = None,
        made_by: str = "",
    ) -> WalletResult:
        key = wallet_key(client_id=client_id, country=country, currency=currency, issuer=issuer)
        _check_same_currency(key, amount_currency)
        amount_minor = amount_minor_of(amount, key.currency)
        reference_id = checked_id(reference_id, field="reference_id")
        return self.primary_store().subtract_credit(
            key, amount_minor, reference_id, made_by=made_by
        )

    def post_batch(
        self, *, items: Sequence[Mapping[str, Any]], atomic: bool, made_by: str = ""
    ) -> list[BatchOutcome]:
        """Many credits, debits and hold operations in one call (`domain.batches`), each
        item checked as its single write is: an item the checks refuse (400: its id,
        country, currency, amount or expiry) refuses the whole batch, naming it, before
        anything is written, as does an id (or a hold) used twice in one batch. The store's
        refusals (404, 409, 422) are items' outcomes when independent, and refuse the batch
        when all-or-nothing."""
        if not 1 <= len(items) <= BATCH_ITEMS_MAX:
            raise errors.ValidationFailed(
                f"A batch holds 1 to {BATCH_ITEMS_MAX} items.", field="items"
            )
        keys: dict[tuple[Any, ...], WalletKey | errors.WalletError] = {}
        amounts: dict[tuple[str, str], int] = {}
        checked = []
        for index, item in enumerate(items):
            outcome = _checked_item(item, keys, amounts=amounts)
            if isinstance(outcome, errors.WalletError):
                raise refused_at(index, outcome)
            checked.append(outcome)
        _refuse_repeated_ids(checked)
        outcomes = self.primary_store().post_batch(checked, atomic=atomic, made_by=made_by)
        assert len(outcomes) == len(checked), "the store answers one outcome per item"
        return outcomes

    def get_balance(
        self, *, client_id: str, country: str, currency: str, issuer: str | None = None
    ) -> WalletBalance:
        key = wallet_key(client_id=client_id, country=country, currency=currency, issuer=issuer)
        return self.primary_store().get_balance(key)

    def get_history(
        self,
        *,
        client_id: str,
        country: str,
        currency: str,
        issuer: str | None = None,
        from_time: str | None = None,
        to_time: str | None = None,
        limit: str | int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        """A page of the wallet's balance history; the query's checks are
        `ledger.history_query`'s."""
        key = wallet_key(client_id=client_id, country=country, currency=currency, issuer=issuer)
        query = history_query(key, from_time=from_time, to_time=to_time, limit=limit, cursor=cursor)
        return self.primary_store().history(query)

    def get_statement(
        self,
        *,
        client_id: str,
        country: str,
        currency: str,
        issuer: str | None = None,
        from_time: str | None,
        to_time: str | None,
    ) -> Statement:
        """The wallet's statement for [from, to) (`ledger.statements`): the period is checked
        before the history is read."""
        key = wallet_key(client_id=client_id, country=country, currency=currency, issuer=issuer)
        period = statement_period(from_time=from_time, to_time=to_time)
        return wallet_statement(self.primary_store(), key, period=period)

    def get_balances(self, client_id: str) -> list[WalletBalance]:
        return self.primary_store().get_balances(checked_id(client_id, field="client_id"))

    def void_transaction(self, transaction_id: str, *, voided_by: str, reason: str) -> WalletResult:
        transaction_id = checked_id(transaction_id, field="transaction_id")
        if not reason or not reason.strip():
            raise errors.ValidationFailed("A void needs a reason.", field="reason")
        return self.primary_store().void_transaction(
            transaction_id, voided_by=voided_by, reason=reason.strip()
        )

    def get_transaction(self, transaction_id: str) -> TransactionRecord:
        return self.primary_store().get_transaction(
            checked_id(transaction_id, field="transaction_id")
        )

    # --- holds (domain.holds) ---------------------------------------------------------------

    def place_hold(
        self,
        *,
        client_id: str,
        country: str,
        currency: str,
        amount: Decimal | str,
        hold_id: str,
        expires_in_s: int,
        issuer: str | None = None,
        amount_currency: str | None = None,
        made_by: str = "",
    ) -> HoldResult:
        """Reserve `amount` on the wallet under `hold_id` for `expires_in_s` seconds."""
        key = wallet_key(client_id=client_id, country=country, currency=currency, issuer=issuer)
        _check_same_currency(key, amount_currency)
        amount_minor = amount_minor_of(amount, key.currency)
        hold_id = checked_id(hold_id, field="hold_id")
        timeout_s = _checked_timeout(expires_in_s)
        return self.primary_store().place_hold(
            key, amount_minor, hold_id, timeout_s=timeout_s, made_by=made_by
        )

    def capture_hold(
        self,
        hold_id: str,
        *,
        amount: Decimal | str | None = None,
        made_by: str = "",
    ) -> HoldResult:
        """Capture all of the hold (`amount` None) or part; the rest goes back to the wallet."""
        hold_id = checked_id(hold_id, field="hold_id")
        amount_minor = None
        if amount is not None:
            hold = self.primary_store().get_hold(hold_id)
            amount_minor = amount_minor_of(amount, hold.key.currency)
        return self.primary_store().capture_hold(
            hold_id, amount_minor=amount_minor, made_by=made_by
        )

    def release_hold(self, hold_id: str, *, made_by: str = "") -> HoldResult:
        return self.primary_store().release_hold(
            checked_id(hold_id, field="hold_id"), made_by=made_by
        )

    def get_hold(self, hold_id: str) -> Hold:
        return self.primary_store().get_hold(checked_id(hold_id, field="hold_id"))


def _checked_timeout(expires_in_s: object) -> int:
    """A hold's life in whole seconds, HOLD_TIMEOUT_MIN_S to HOLD_TIMEOUT_MAX_S."""
    if (
        isinstance(expires_in_s, bool)
        or not isinstance(expires_in_s, int)
        or not HOLD_TIMEOUT_MIN_S <= expires_in_s <= HOLD_TIMEOUT_MAX_S
    ):
        raise errors.ValidationFailed(
            f"expires_in_s must be a whole number of seconds from {HOLD_TIMEOUT_MIN_S} "
            f"to {HOLD_TIMEOUT_MAX_S}.",
            field="expires_in_s",
        )
    return expires_in_s


def _checked_item(
    item: Mapping[str, Any],
    keys: dict[tuple[Any, ...], WalletKey | errors.WalletError],
    *,
    amounts: dict[tuple[str, str], int],
) -> BatchItem | errors.WalletError:
    """One batch item as its single write checks it: the item, or the refusal. `keys`: the
    batch's wallet keys checked so far (a batch names few wallets many times); `amounts`:
    the minor units of the amount texts accepted so far, by (text, currency) (a batch
    repeats few amounts; a refused one is checked again, and refused again)."""
    try:
        kind = item_kind(item["kind"])
        if kind is None:
            raise errors.ValidationFailed(f"Unknown kind of item {item['kind']!r}.", field="kind")
        item_id = checked_id(item.get(kind.id_field, ""), field=kind.id_field)
        if not kind.names_wallet:
            amount = item.get("amount") if kind is BatchItemKind.CAPTURE else None
            if amount is not None:
                _check_capture_amount(amount)
            return BatchItem(
                kind=kind, key=None, amount_minor=0, transaction_id=item_id, capture_amount=amount
            )
        named = (item["client_id"], item["country"], item["currency"], item.get("issuer"))
        key = keys.get(named)
        if key is None:
            try:
                key = keys[named] = wallet_key(
                    client_id=named[0], country=named[1], currency=named[2], issuer=named[3]
                )
            except errors.WalletError as refusal:
                key = keys[named] = refusal
        if isinstance(key, errors.WalletError):
            raise key
        amount = item["amount"]
        known = (amount, key.currency) if type(amount) is str else None
        amount_minor = amounts.get(known) if known is not None else None
        if amount_minor is None:
            amount_minor = amount_minor_of(amount, key.currency)
            if known is not None:
                amounts[known] = amount_minor
        timeout_s = 0
        if kind is BatchItemKind.HOLD:
            timeout_s = _checked_timeout(item.get("expires_in_s"))
        return BatchItem(
            kind=kind,
            key=key,
            amount_minor=amount_minor,
            transaction_id=item_id,
            timeout_s=timeout_s,
        )
    except errors.WalletError as refusal:
        return refusal


def _check_capture_amount(amount: Decimal | str) -> None:
    """A capture's amount as far as it can be judged before its hold's currency is known:
    a positive amount (its decimal places are judged with the hold's currency, by the
    store, before anything is written)."""
    amount_minor_of(amount, _WIDEST_CURRENCY)


def _refuse_repeated_ids(checked: list[BatchItem]) -> None:
    """Each id at most once per batch: a repeat inside one batch is the client's mistake (a
    retry resends the whole batch), refused before anything is written. Transfer ids and
    hold ids are two namespaces, as for the single endpoints; a hold named twice (placed
    then captured, say) is `hold_repeated_in_batch`."""
    first_of: dict[tuple[bool, str], int] = {}
    for index, item in enumerate(checked):
        is_hold = item.kind.is_hold_operation
        first = first_of.setdefault((is_hold, item.transaction_id), index)
        if first == index:
            continue
        if is_hold:
            raise errors.HoldRepeatedInBatch(
                f"Items {first} and {index} both name hold {item.transaction_id!r}; each "
                "hold at most once per batch (resolve a hold in a later batch).",
                field="items",
                item=index,
            )
        raise errors.ValidationFailed(
            f"Items {first} and {index} share the id {item.transaction_id!r}; "
            "each id at most once per batch.",
            field="items",
            item=index,
        )
