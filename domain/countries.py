"""Countries: ISO 3166 via pycountry. Wallets are keyed by alpha-3; TigerBeetle's
`user_data_32` holds the numeric code."""

from __future__ import annotations

from functools import lru_cache

import pycountry
from pycountry.db import Country


class UnknownCountry(ValueError):
    code = "unknown_country"


@lru_cache(maxsize=1024)
def _country(code: str) -> Country:
    normalized = code.strip().upper() if isinstance(code, str) else ""
    country = None
    if len(normalized) == 2:
        country = pycountry.countries.get(alpha_2=normalized)
    elif len(normalized) == 3:
        country = pycountry.countries.get(alpha_3=normalized)
    if country is None:
        raise UnknownCountry(f"{code!r} is not an ISO 3166 alpha-2 or alpha-3 country code")
    return country


def normalize_country(code: str) -> str:
    """Alpha-3 for an alpha-2 or alpha-3 code: "us" -> "USA"."""
    return str(_country(code).alpha_3)


def country_numeric(code: str) -> int:
    """The ISO 3166 numeric code: "USA" -> 840."""
    return int(_country(code).numeric)


@lru_cache(maxsize=1)
def country_codes() -> tuple[str, ...]:
    """Every code `normalize_country` reads (alpha-2 and alpha-3, upper case), sorted: what
    the API's schema lists as the countries it accepts."""
    codes = {str(c.alpha_2) for c in pycountry.countries} | {
        str(c.alpha_3) for c in pycountry.countries
    }
    return tuple(sorted(codes))
