"""The webhook signature: HMAC-SHA256 over `{t}.{body}` with the subscription's secret, sent
as `Wallet-Signature: t=<unix seconds>,v1=<hex digest>` (docs/events.md has a receiver that
checks it, which the tests run). The timestamp inside the signed text lets a receiver refuse
an old delivery replayed by someone who recorded it."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Wallet-Signature"


def signature(secret: str, *, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, *, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp=timestamp, body=body)}"
