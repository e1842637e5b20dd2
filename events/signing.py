"""The webhook signature: HMAC-SHA256 over `{t}.{body}` with the subscription's secret, sent
as `Wallet-Signature: t=<unix seconds>,v1=<hex digest>` (docs/events.md has a receiver that
checks it). The timestamp inside the signed text lets a receiver refuse an old delivery
replayed by someone who recorded it."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Wallet-Signature"


def signature(secret: str, *, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, *, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp=timestamp, body=body)}"


def verify(secret: str, *, header: str, body: bytes, now: int, tolerance_s: int) -> bool:
    """True when `header` signs `body` with `secret` and its time is within `tolerance_s` of
    `now` (the receiver's side; docs/events.md shows the same in a few lines)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, parts.get("v1", ""))
