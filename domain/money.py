"""Money: `Decimal` at the edges, integer minor units inside.

The ISO 4217 exponent of each currency comes from py-moneyed's currency table (`sub_unit`:
USD 100, JPY 1, KWD 1000, CLF 10000), and so does the numeric code that numbers the
currency's TigerBeetle ledger (USD 840). One source of truth, kept by a maintained library.

Nothing is ever rounded: an amount finer than its currency allows is refused.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded, localcontext
from functools import lru_cache

import moneyed
from babel.numbers import format_currency

# Balances sum many transfers and must stay exact in every store, MongoDB's Decimal128 (34
# significant digits) included, and in signed 64-bit database columns; 2^63-1 minor units is
# ~9.2e16 dollars, far beyond any wallet.
AMOUNT_MINOR_MAX = 2**63 - 1
# The one balance limit of every store: no wallet's historical credit (everything it was
# ever credited, voided debits included) passes it, so none of its balance fields (credit,
# debit, historical credit, each at most the historical credit) leaves signed 64 bits, which
# the MongoDB log and the registries store. A write that would cross it is refused
# (`balance_limit_exceeded`) and posts nothing.
BALANCE_MINOR_MAX = 2**63 - 1
# A decimal literal longer than this is refused before parsing ("1e999999999" is cheap to
# write and expensive to expand).
AMOUNT_TEXT_MAX_LENGTH = 64
# The one written form of an amount: ASCII digits, optionally '.' and more ASCII digits, with
# an optional leading '-' that is read and then refused as not positive. Python's Decimal()
# also reads "1_000", "+5", "1e2", " 5 " and non-ASCII digits ("\uff15", "\u0665"); none
# of those is an amount here.
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# moneyed lists historic and special codes too; these are not money a wallet holds.
# Arithmetic on amounts must be exact: a context wide enough for any accepted literal that
# raises instead of rounding.
_EXACT = Context(prec=2 * AMOUNT_TEXT_MAX_LENGTH, traps=[Inexact, Rounded, InvalidOperation])
_NOT_WALLET_CURRENCIES = {
    "XXX",
    "XTS",
    "XAU",
    "XAG",
    "XPD",
    "XPT",
    "XDR",
    "XSU",
    "XUA",
    "XBA",
    "XBB",
    "XBC",
    "XBD",
    "XFO",
    "XFU",
    "XRE",
}


class MoneyError(ValueError):
    """An amount or currency a wallet cannot take; `code` is the API's machine code."""

    code = "invalid_amount"


class InvalidAmount(MoneyError):
    code = "invalid_amount"


class UnknownCurrency(MoneyError):
    code = "unknown_currency"


@lru_cache(maxsize=512)
def _currency(code: str) -> moneyed.Currency:
    normalized = code.strip().upper() if isinstance(code, str) else ""
    if len(normalized) != 3 or normalized in _NOT_WALLET_CURRENCIES:
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code")
    try:
        currency = moneyed.get_currency(normalized)
    except moneyed.CurrencyDoesNotExist as exc:
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code") from exc
    if not currency.numeric or not currency.sub_unit:
        raise UnknownCurrency(f"{code!r} has no ISO 4217 numeric code or minor unit")
    return currency


def normalize_currency(code: str) -> str:
    """The upper-case ISO 4217 alphabetic code, or UnknownCurrency."""
    return str(_currency(code).code)


@lru_cache(maxsize=1)
def wallet_currency_codes() -> tuple[str, ...]:
    """Every currency code `normalize_currency` accepts (upper case), sorted: what the API's
    schema lists as the currencies a wallet may hold."""
    codes = []
    for code in moneyed.CURRENCIES:
        try:
            codes.append(normalize_currency(code))
        except MoneyError:
            continue
    return tuple(sorted(set(codes)))


def currency_exponent(code: str) -> int:
    """Digits after the decimal point: USD 2, JPY 0, KWD 3."""
    sub_unit = int(_currency(code).sub_unit)
    return len(str(sub_unit)) - 1


def ledger_for_currency(code: str) -> int:
    """The TigerBeetle ledger of a currency: its ISO 4217 numeric code (USD 840)."""
    numeric = _currency(code).numeric
    assert numeric is not None  # _currency refuses a currency without one
    return int(numeric)


@lru_cache(maxsize=512)
def currency_for_ledger(ledger: int) -> str:
    """The inverse of ledger_for_currency."""
    for currency in moneyed.CURRENCIES.values():
        if (
            currency.numeric
            and int(currency.numeric) == ledger
            and currency.sub_unit
            and currency.code not in _NOT_WALLET_CURRENCIES
        ):
            return str(currency.code)
    raise UnknownCurrency(f"no currency has ledger {ledger}")


def _as_decimal(amount: Decimal | str | int) -> Decimal:
    if isinstance(amount, (bool, float)):
        # A float has already lost the cents; refuse it rather than guess.
        raise InvalidAmount("amounts must be decimal strings or Decimals, never floats")
    if isinstance(amount, Decimal):
        return amount
    if isinstance(amount, int):
        return Decimal(amount)
    if not isinstance(amount, str):
        raise InvalidAmount(f"{type(amount).__name__} is not an amount")
    if len(amount) > AMOUNT_TEXT_MAX_LENGTH or not _PLAIN_DECIMAL.fullmatch(amount):
        raise InvalidAmount(
            f"{_shown(amount)} is not a plain decimal amount "
            '(ASCII digits with an optional "." fraction, e.g. "10.50")'
        )
    return Decimal(amount)


def _shown(amount: object) -> str:
    """The amount as an error message quotes it: a hostile literal can be megabytes long."""
    text = repr(amount)
    return text if len(text) <= AMOUNT_TEXT_MAX_LENGTH else f"{text[:AMOUNT_TEXT_MAX_LENGTH]}..."


def to_minor_units(amount: Decimal | str | int, currency: str) -> int:
    """Integer minor units of a positive amount in `currency`; refuses, never rounds.

    Refused: zero, negative, NaN/Infinity, floats, strings other than a plain decimal,
    more decimals than the currency has, more than AMOUNT_MINOR_MAX minor units. Exact
    integer arithmetic on the Decimal's digits, so no exponent ("1e-999999999" as a JSON
    number) can trip a decimal context.
    """
    exponent = currency_exponent(currency)
    value = _as_decimal(amount)
    shown = _shown(amount)
    if not value.is_finite():
        raise InvalidAmount(f"{shown} is not a finite amount")
    if value <= 0:
        raise InvalidAmount(f"{shown} is not a positive amount")
    if value.adjusted() > len(str(AMOUNT_MINOR_MAX)):
        raise InvalidAmount(f"{shown} is beyond the ledger's range")
    _, digits, digits_exponent = value.as_tuple()
    assert isinstance(digits_exponent, int)  # finite
    significant = "".join(map(str, digits)).rstrip("0")
    shift = digits_exponent + (len(digits) - len(significant)) + exponent
    if shift < 0:
        raise InvalidAmount(
            f"{shown} has more than {exponent} decimal places, the most {currency} allows"
        )
    minor_units: int = int(significant) * 10**shift  # shift >= 0: an int
    if minor_units > AMOUNT_MINOR_MAX:
        raise InvalidAmount(f"{shown} is beyond the ledger's range")
    return minor_units


def from_minor_units(amount_minor: int, currency: str) -> Decimal:
    """The Decimal of `amount_minor` with the currency's exponent: 1230 USD -> 12.30."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("minor units are integers")
    exponent = currency_exponent(currency)
    with localcontext(_EXACT):
        return Decimal(amount_minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def format_money_in(amount_minor: int, currency: str, *, locale: str) -> str:
    """An amount as people read it, with its currency, in a locale: 11990 USD -> "$119.90" in
    en_US. Babel formats; the digits come from `from_minor_units` and are never rounded (no
    quantization to CLDR's idea of the currency's digits)."""
    return format_currency(
        from_minor_units(amount_minor, currency),
        currency,
        locale=locale,
        decimal_quantization=False,
    )
