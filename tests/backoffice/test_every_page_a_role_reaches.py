"""Every admin page a support agent or a product manager can reach, walked by following the
links from the admin index (through the lists to the records), in phases 0, 1, 3 and 4, with
wallets in four currencies, a legacy wallet only MongoDB holds, a void, a refused debit, a
mismatch, shadow comparisons and a reconciliation run: none answers 404, 403 or 500, and
none shows a person the internals ("minor", "object (", raw floats, raw JSON)."""

from __future__ import annotations

import html
import re
from collections import Counter
from io import StringIO
from urllib.parse import urldefrag, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from domain import errors
from domain.ids import WalletKey
from flags.phases import Phase
from ledger.stores.mongo_documents import decimal128
from migration.models import ShadowComparison
from tests.backoffice.conftest import client_for, user_in
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx
from tests.migration.gates import on_day, shadow_timed

# Query-string variants (filters, orderings, pages) of one path walked at most: the rest
# show the same templates over other rows.
VARIANTS_PER_PATH = 1
PAGES_MAX = 400
# Links that change something, log out or download: not pages to read.
NOT_PAGES = re.compile(r"/logout/|/password_change/|export\.csv|/recheck/$|/delete/|/add/")

WRONG_WORDS = re.compile(r"\bminor\b|object \(|Mongo credit|latency us", re.IGNORECASE)
RAW_FLOAT = re.compile(r"(?<![\w.])\d+\.\d{5,}(?![\w.])")
RAW_JSON = re.compile(r"[{\[]\s*&quot;|[{\[]\s*\"\w+\"\s*:")


def visible_text(page: str) -> str:
    """What a person reads: the body without scripts, styles, tags and attributes, nor the
    charts' <desc> elements (coordinates for a tooltip script, never drawn)."""
    body = page.split("<body", 1)[-1]
    body = re.sub(r"<(script|style|desc)\b.*?</\1>", " ", body, flags=re.DOTALL | re.IGNORECASE)
    body = re.sub(r"<[^>]+>", " ", body)
    return html.unescape(body)


def links(page: str) -> list[str]:
    found = []
    for href in re.findall(r'<a\b[^>]*\bhref="([^"]+)"', page):
        url = urldefrag(html.unescape(href))[0]
        if url.startswith("/admin/") and not NOT_PAGES.search(urlsplit(url).path):
            found.append(url)
    return found


def problems_on(url: str, status: int, page: str) -> list[str]:
    if status != 200:
        return [f"{url}: HTTP {status}"]
    text = visible_text(page)
    found = [
        f"{url}: error {' '.join(message.split())!r}"
        for message in re.findall(r'<li class="error">(.*?)</li>', page, flags=re.DOTALL)
    ]
    for name, pattern in (("words", WRONG_WORDS), ("float", RAW_FLOAT), ("JSON", RAW_JSON)):
        for match in pattern.finditer(text):
            context = " ".join(text[max(0, match.start() - 40) : match.end() + 40].split())
            found.append(f"{url}: {name} {match.group(0)!r} in ...{context}...")
    return found


def walk(client: Client) -> tuple[list[str], list[str]]:
    """Every page reachable from the admin index by links; (pages seen, problems)."""
    queue, seen, problems = ["/admin/"], set[str](), []
    variants: Counter[str] = Counter()
    while queue and len(seen) < PAGES_MAX:
        url = queue.pop(0)
        if url in seen:
            continue
        path = urlsplit(url).path
        if urlsplit(url).query:
            if variants[path] >= VARIANTS_PER_PATH:
                continue
            variants[path] += 1
        seen.add(url)
        response = client.get(url, follow=True)
        page = response.content.decode() if "html" in response.get("Content-Type", "") else ""
        problems += problems_on(url, response.status_code, page)
        queue += [link for link in links(page) if link not in seen]
    return sorted(seen), problems


def wallets_of_every_kind(stores: Stores) -> str:
    """Written in dual write: four currencies, a void, a refused debit, a legacy wallet only
    MongoDB holds, a mismatch found by a reconciliation run, shadow comparisons. Answers the
    refused debit's id (a transaction only MongoDB holds)."""
    enter_phase(Phase.DUAL_WRITE)
    keys = [new_key(currency) for currency in ("USD", "EUR", "JPY")]
    keys.append(WalletKey(new_key().client_id, "GBR", "GBP"))
    for key in keys:
        stores.phased.add_credit(key, 12_345, tx())
        stores.phased.subtract_credit(key, 2_000, tx())
    voided = tx()
    stores.phased.subtract_credit(keys[0], 1_000, voided)
    stores.phased.void_transaction(voided, voided_by="support-lead", reason="customer disputed")
    refused = tx()
    with pytest.raises(errors.InsufficientFunds):
        stores.phased.subtract_credit(keys[1], 1_000_000, refused)
    legacy_wallet(stores, new_key("EUR"), credit_minor=4_200, debit_minor=800)
    stores.mongo.database.wallets().update_one(  # a legacy bug: the stores now differ
        {"client_id": keys[3].client_id}, {"$set": {"credit": decimal128(10_344, "GBP")}}
    )
    with pytest.raises(CommandError):
        call_command("reconcile", stdout=StringIO())
    shadow_timed([0, 1], tb_us=123, mongo_us=4567)
    ShadowComparison.objects.create(  # yesterday missed the match-rate target
        **keys[0].as_columns(),
        wallet_seq=3,
        outcome=ShadowComparison.Outcome.MISMATCH,
        mongo_credit_minor=10_345,
        mongo_debit_minor=2_000,
        mongo_historical_credit_minor=12_345,
        tb_credit_minor=10_344,
        tb_debit_minor=2_001,
        tb_historical_credit_minor=12_345,
        mismatched_fields="credit,debit",
        mongo_latency_us=4_321,
        tb_latency_us=321,
        compared_at=on_day(1),
    )
    return refused


@pytest.mark.parametrize(
    "phase",
    [Phase.LEGACY, Phase.DUAL_WRITE, Phase.READ_CUTOVER, Phase.TIGERBEETLE_ONLY],
    ids=lambda phase: f"phase-{int(phase)}",
)
def test_no_page_a_role_reaches_is_broken_or_shows_internals(stores: Stores, phase: Phase) -> None:
    wallets_of_every_kind(stores)
    enter_phase(phase)
    problems = []
    for role in ("Support", "Product"):
        pages, found = walk(client_for(user_in(role)))
        assert len(pages) > 10, (role, pages)
        problems += [f"{role}: {problem}" for problem in found]
    assert problems == [], "\n".join(problems)
