"""Both roles walk the back-office's main pages in phases 0, 1, 3 and 4 at 1280 px, on
wallets of every kind (four currencies, a legacy wallet, a void, a refused debit, a
mismatch, shadow comparisons, a reconciliation run); a screenshot of each page is kept under
var/screenshots/ for a person to look at. Each page answers, fits the screen, and shows no
internals ("minor", "object (", raw floats)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from flags.phases import Phase
from migration.models import ReconciliationMismatch, ReconciliationRun, ShadowComparison
from registry.models import WalletAccount
from tests.backoffice.test_every_page_a_role_reaches import (
    RAW_FLOAT,
    WRONG_WORDS,
    wallets_of_every_kind,
)
from tests.browser.test_backoffice_in_a_browser import (
    VIEWPORT_WIDTH,
    fits_the_screen,
    log_in,
    staff_in,
)
from tests.migration.conftest import (  # noqa: F401 - fixtures
    Stores,
    _tasks_in_process,
    committed_stores,
    enter_phase,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"
PHASES = (Phase.LEGACY, Phase.DUAL_WRITE, Phase.READ_CUTOVER, Phase.TIGERBEETLE_ONLY)


def pages_of(role: str, refused_debit: str) -> dict[str, str]:
    """The pages each role walks: (name, path)."""
    mismatch = ReconciliationMismatch.objects.get()
    wallet = WalletAccount.objects.get(currency="USD")
    common = {
        "mismatch": f"/admin/migration/reconciliationmismatch/{mismatch.pk}/change/",
        "wallet": f"/admin/registry/walletaccount/{wallet.pk}/change/",
    }
    if role == "Support":
        return {
            "index": "/admin/",
            "wallets": "/admin/registry/walletaccount/",
            **common,
            "refused-debit": f"/admin/registry/wallettransfer/record/{refused_debit}/",
            "find-nothing": "/admin/find/?q=ACME-SHOP",
        }
    run = ReconciliationRun.objects.get()
    comparison = ShadowComparison.objects.first()
    assert comparison is not None
    return {
        "dashboard": "/admin/migration/dashboard/",
        **common,
        "run": f"/admin/migration/reconciliationrun/{run.pk}/change/",
        "shadow-comparison": f"/admin/migration/shadowcomparison/{comparison.pk}/change/",
    }


def test_both_roles_walk_the_main_pages_in_phases_0_1_3_and_4(
    browser: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    refused_debit = wallets_of_every_kind(committed_stores)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tabs = {}
    for role in ("Support", "Product"):
        context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": 900})
        tabs[role] = context.new_page()
        tabs[role].set_default_timeout(15_000)
        log_in(tabs[role], live_server.url, username=staff_in(role))
    problems = []
    for phase in PHASES:
        enter_phase(phase)
        for role, tab in tabs.items():
            for name, path in pages_of(role, refused_debit).items():
                response = tab.goto(f"{live_server.url}{path}")
                tab.screenshot(
                    path=str(SCREENSHOTS / f"phase-{int(phase)}-{role.lower()}-{name}.png"),
                    full_page=True,
                )
                text = tab.inner_text("#content")
                where = f"phase {int(phase)}, {role}, {name}"
                if response is None or response.status != 200:
                    problems.append(f"{where}: HTTP {response and response.status}")
                if not fits_the_screen(tab):
                    problems.append(f"{where}: wider than {VIEWPORT_WIDTH} px")
                for pattern in (WRONG_WORDS, RAW_FLOAT):
                    problems += [f"{where}: {found!r}" for found in pattern.findall(text)]
                if tab.locator(".messagelist .error").count():
                    problems.append(f"{where}: {tab.inner_text('.messagelist')}")
    for tab in tabs.values():
        tab.context.close()
    assert problems == [], "\n".join(problems)
