"""Amounts: exact conversion between Decimal and minor units, or a clear refusal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import (
    AMOUNT_MINOR_MAX,
    InvalidAmount,
    UnknownCurrency,
    currency_exponent,
    currency_for_ledger,
    from_minor_units,
    ledger_for_currency,
    normalize_currency,
    to_minor_units,
)


@pytest.mark.parametrize(("currency", "exponent"), [("USD", 2), ("JPY", 0), ("KWD", 3), ("CLF", 4)])
def test_exponent_follows_iso_4217(currency: str, exponent: int) -> None:
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("10.50", "USD", 1050),
        ("10.5", "USD", 1050),
        ("100", "JPY", 100),
        ("1.234", "KWD", 1234),
        (Decimal("0.01"), "USD", 1),
        (7, "JPY", 7),
        ("1.000000000000000000000000000000", "USD", 100),
    ],
)
def test_amounts_convert_to_exact_minor_units(amount: object, currency: str, minor: int) -> None:
    assert to_minor_units(amount, currency) == minor  # type: ignore[arg-type]  # str, Decimal, int


@pytest.mark.parametrize(
    "amount",
    [
        "0",
        "0.00",
        "-0.01",
        "-5",
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        "",
        "  ",
        "abc",
        "1,00",
        "0x10",
        "1e400",
        "9" * 70,
    ],
)
def test_amounts_that_are_not_positive_finite_decimals_are_refused(amount: str) -> None:
    with pytest.raises(InvalidAmount):
        to_minor_units(amount, "USD")


def test_an_amount_finer_than_the_currency_is_refused_not_rounded() -> None:
    with pytest.raises(InvalidAmount, match="decimal places"):
        to_minor_units("0.001", "USD")


def test_a_fraction_of_a_yen_is_refused() -> None:
    with pytest.raises(InvalidAmount):
        to_minor_units("100.5", "JPY")


def test_a_tiny_fraction_beyond_decimal_precision_is_refused_not_rounded_away() -> None:
    with pytest.raises(InvalidAmount):
        to_minor_units("1.00000000000000000000000000001", "USD")


@pytest.mark.parametrize("amount", [1.5, 0.1, True, None, [1]])
def test_floats_and_non_amount_types_are_refused(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        to_minor_units(amount, "USD")  # type: ignore[arg-type]  # wrong types on purpose


def test_the_largest_amount_the_ledger_takes_is_accepted_and_one_more_is_refused() -> None:
    largest = from_minor_units(AMOUNT_MINOR_MAX, "USD")

    assert to_minor_units(largest, "USD") == AMOUNT_MINOR_MAX
    with pytest.raises(InvalidAmount, match="range"):
        to_minor_units(largest + Decimal("0.01"), "USD")


@pytest.mark.parametrize("code", ["XYZ", "US", "USDD", "", "XXX", "XAU"])
def test_codes_that_are_not_wallet_currencies_are_unknown(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        to_minor_units("1", code)


def test_currency_codes_are_normalised_to_upper_case() -> None:
    assert normalize_currency(" usd ") == "USD"


def test_minor_units_render_with_the_currency_exponent() -> None:
    assert str(from_minor_units(1230, "USD")) == "12.30"
    assert str(from_minor_units(5, "KWD")) == "0.005"
    assert str(from_minor_units(7, "JPY")) == "7"


def test_ledger_numbers_are_iso_4217_numeric_codes_and_invert() -> None:
    assert [ledger_for_currency(c) for c in ("USD", "EUR", "JPY")] == [840, 978, 392]
    assert currency_for_ledger(978) == "EUR"


@given(
    minor=st.integers(min_value=1, max_value=AMOUNT_MINOR_MAX),
    currency=st.sampled_from(["USD", "JPY", "KWD", "CLF", "EUR"]),
)
def test_minor_units_round_trip_exactly_through_decimal(minor: int, currency: str) -> None:
    assert to_minor_units(from_minor_units(minor, currency), currency) == minor
    assert to_minor_units(str(from_minor_units(minor, currency)), currency) == minor
