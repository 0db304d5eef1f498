"""The upload page in real headless Chromium (Playwright) on loopback: upload a real photo, see the top-k bars."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from conftest import SAMPLES

import ipex_resnet
from ipex_resnet.serve import ServeConfig, ServerThread, create_app

PHOTO = SAMPLES / "n01440764_tench.JPEG"
CHROMIUM = os.environ.get("IPEX_RESNET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_upload_page_in_chromium():
    if not PHOTO.exists():
        pytest.skip(f"sample photo {PHOTO} is missing")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set IPEX_RESNET_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")

    loader = lambda: ipex_resnet.load("resnet18", weights="none", backend="eager", precision="fp32")
    with ServerThread(create_app(loader, ServeConfig(max_batch=4))) as srv:
        srv.wait_ready()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(srv.url + "/", wait_until="load")
                page.wait_for_function(
                    "document.getElementById('meta').textContent.includes('resnet18')", timeout=30_000
                )
                page.fill("#topk", "3")
                page.set_input_files("#file", str(PHOTO))
                page.wait_for_selector("#results .result", timeout=60_000)
                rows = page.locator("#results .result")
                assert rows.count() == 3
                labels = [t.strip() for t in page.locator("#results .label").all_inner_texts()]
                assert all(labels), labels
                want = [r["label"] for r in srv.state.clf.predict([PHOTO], topk=3)[0]]
                assert labels == want
                widths = page.eval_on_selector_all(
                    "#results .bar", "bars => bars.map(b => b.getBoundingClientRect().width)"
                )
                assert len(widths) == 3 and all(w > 0 for w in widths) and widths == sorted(widths, reverse=True)
                assert page.eval_on_selector("#preview", "img => img.complete && img.naturalWidth > 0")
                assert "resnet18" in page.inner_text("#status")
                # a non-image shows the service's error message, not a crash
                page.set_input_files(
                    "#file", files=[{"name": "notes.txt", "mimeType": "image/jpeg", "buffer": b"not an image at all"}]
                )
                page.wait_for_selector("#status.error", timeout=30_000)
                assert "400" in page.inner_text("#status") and "not an image" in page.inner_text("#status")
                assert not errors, errors
            finally:
                browser.close()
