"""JSON parsing that never lets a float near money, and never lets a body crash the server."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


class DecimalJSONParser(JSONParser):
    """Parses JSON numbers with a fraction or exponent as `Decimal` from their literal text,
    so `10.10` arrives exactly. Python's extensions to JSON (`NaN`, `Infinity`) and bodies
    nested deeper than the interpreter's recursion limit are malformed requests."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            "".encode(encoding)  # a text codec; bytes codecs (bz2_codec) would decompress
        except (LookupError, UnicodeError) as exc:
            raise ParseError(f"Unsupported charset {encoding!r}.") from exc
        try:
            return json.loads(
                stream.read().decode(encoding),
                parse_float=Decimal,
                parse_constant=_refuse_constant,
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error: {exc}") from exc
        except RecursionError as exc:
            raise ParseError("JSON parse error: the body is nested too deeply") from exc
