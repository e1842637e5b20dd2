import pytest

from domain.countries import UnknownCountry, country_numeric, normalize_country


@pytest.mark.parametrize(("code", "alpha_3"), [("USA", "USA"), ("us", "USA"), (" KW ", "KWT")])
def test_alpha_2_and_alpha_3_codes_normalise_to_alpha_3(code: str, alpha_3: str) -> None:
    assert normalize_country(code) == alpha_3


def test_numeric_code_is_iso_3166_numeric() -> None:
    assert country_numeric("USA") == 840
    assert country_numeric("DE") == 276


@pytest.mark.parametrize("code", ["QQQ", "ZZ", "", "USAA", "U"])
def test_unknown_country_codes_are_refused(code: str) -> None:
    with pytest.raises(UnknownCountry):
        normalize_country(code)
