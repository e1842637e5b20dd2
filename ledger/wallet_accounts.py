"""Account set-up on TigerBeetle.

For now: the account codes of this deployment.
"""

from __future__ import annotations

from django.conf import settings

from ledger.tb_model import AccountCodes


def account_codes() -> AccountCodes:
    """This deployment's account codes (TB_WALLET_ACCOUNT_CODE, TB_SYSTEM_ACCOUNT_CODE,
    TB_LIMIT_ACCOUNT_CODE). Read on every call: tests give each test codes of its own
    (override_settings), so no caller may keep them."""
    return AccountCodes(
        wallet=settings.TB_WALLET_ACCOUNT_CODE,
        system=settings.TB_SYSTEM_ACCOUNT_CODE,
        limit=settings.TB_LIMIT_ACCOUNT_CODE,
    )
