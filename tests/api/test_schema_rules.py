"""The schema's rules are the server's: the id pattern judges every character as
`checked_id` does, the amount pattern reads what the service reads, and a void reason is a
JSON string."""

from __future__ import annotations

import re
import unicodedata

import pytest
from rest_framework.test import APIClient

from api.schema import AMOUNT_PATTERN, id_pattern
from domain.errors import InvalidAmount, ValidationFailed
from ledger.service import amount_minor_of, checked_id
from tests.conftest import token_api_client

SAMPLE_STRIDE = 7


def judged_characters() -> list[str]:
    """Every character a rule singles out (control, format, separators, whitespace, '/'),
    and every seventh other code point of Unicode (lone surrogates aside: no pattern can
    name them, and no UTF-8 request carries one)."""
    picked = []
    for code_point in range(0x110000):
        if 0xD800 <= code_point <= 0xDFFF:
            continue
        character = chr(code_point)
        special = unicodedata.category(character)[0] in "CZ" or character.isspace()
        if special or character == "/" or code_point % SAMPLE_STRIDE == 0:
            picked.append(character)
    return picked


def accepted(value: str) -> bool:
    try:
        checked_id(value, field="id")
    except ValidationFailed:
        return False
    return True


def test_the_id_pattern_judges_every_character_as_the_server_does() -> None:
    pattern = re.compile(id_pattern())
    disagreements = [
        value
        for character in judged_characters()
        for value in (character, f"a{character}b", f"{character}a", f"a{character}")
        if accepted(value) != bool(pattern.fullmatch(value))
    ]

    assert disagreements == []


@pytest.mark.parametrize("length", [1, 127, 128, 129])
def test_the_id_pattern_holds_the_length_rule(length: int) -> None:
    value = "x" * length

    assert bool(re.fullmatch(id_pattern(), value)) == accepted(value)


@pytest.mark.parametrize(
    "amount",
    [
        "10.50",
        "7",
        "007",
        "0.01",
        "10.500",
        "0",
        "0.00",
        "00",
        ".5",
        "5.",
        "+5",
        "-5",
        "1e2",
        "1_000",
        " 5",
        "\uff15",
        "\u0665",
        "1.2.3",
        "",
    ],
)
def test_the_amount_pattern_reads_what_the_service_reads(amount: str) -> None:
    try:
        amount_minor_of(amount, "KWD")  # three decimals: no literal above is too fine for it
        served = True
    except InvalidAmount:
        served = False

    assert bool(re.fullmatch(AMOUNT_PATTERN, amount)) == served


@pytest.mark.django_db
@pytest.mark.parametrize("reason", [12, 1.5, True, None, ["why"], {"why": "x"}])
def test_a_void_reason_that_is_not_a_json_string_is_refused_naming_it(reason: object) -> None:
    api: APIClient = token_api_client()

    response = api.post("/api/transactions/tx-1/void", {"reason": reason}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "reason" in response.json()["error"]["details"]["fields"]
