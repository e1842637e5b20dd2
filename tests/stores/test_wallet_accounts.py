"""Account set-up on TigerBeetle (ledger/wallet_accounts.py): the deployment's account codes."""

from __future__ import annotations

import dataclasses

import pytest
from django.test import override_settings

from ledger.tb_model import AccountCodes
from ledger.wallet_accounts import account_codes


def test_the_account_codes_come_from_settings_and_follow_an_override_at_once() -> None:
    with override_settings(
        TB_WALLET_ACCOUNT_CODE=4001, TB_SYSTEM_ACCOUNT_CODE=4002, TB_LIMIT_ACCOUNT_CODE=4003
    ):
        assert account_codes() == AccountCodes(wallet=4001, system=4002, limit=4003)
        with override_settings(TB_WALLET_ACCOUNT_CODE=4011):
            assert account_codes().wallet == 4011


def test_account_codes_cannot_be_changed_once_read() -> None:
    codes = account_codes()
    with pytest.raises(dataclasses.FrozenInstanceError):
        codes.wallet = 1  # type: ignore[misc]
