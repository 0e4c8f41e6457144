"""Headless Chromium for the browser tests (Debian's chromium, driven by Playwright): one
`chromium` fixture for every module here. A module's screenshots go under its own ARTIFACTS
folder, which the fixture creates."""

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS_ROOT = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def chromium(request, monkeypatch):
    if not Path(CHROMIUM).exists():
        message = f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("PLUM_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PLUM_REQUIRE_SERVICES=1 but this test {message}", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    Path(getattr(request.module, "ARTIFACTS", ARTIFACTS_ROOT)).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()
