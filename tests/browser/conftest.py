"""Browser tests: Playwright for Python driving Debian's Chromium against a live server.

The setup installs what it needs itself: Debian's `chromium` package through apt-get when
/usr/bin/chromium is missing (Playwright's own browser downloads are not used). Screenshots
of each step are kept under var/test-artifacts/browser/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings

if TYPE_CHECKING:  # loaded by the browser fixture, once Chromium is known to be there
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(settings.VAR_DIR) / "test-artifacts" / "browser"
APT_TIMEOUT_S = 600


def _install_chromium() -> str:
    """Debian's Chromium, installed with apt-get if missing; '' or the reason it is not."""
    if CHROMIUM.exists():
        return ""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return "Chromium is missing and apt-get (as root) is not available to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [apt, "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, timeout=APT_TIMEOUT_S)
    if result.returncode != 0:  # stale package lists on a fresh machine
        subprocess.run([apt, "update"], env=env, capture_output=True, timeout=APT_TIMEOUT_S)
        result = subprocess.run(install, env=env, capture_output=True, timeout=APT_TIMEOUT_S)
    if result.returncode != 0 or not CHROMIUM.exists():
        return "apt-get could not install chromium: " + result.stderr.decode()[-500:]
    return ""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    problem = _install_chromium()
    if problem:
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous, so Django's async-safety guard must not trip on them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def screenshot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
