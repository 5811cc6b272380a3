"""The studio page in a real browser (Debian's chromium driven by Playwright), on tiny random networks.

Skipped, with the reason, where Playwright or a system Chromium is missing (.ci/run installs both).
"""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from helpers import stripes_image
from web_helpers import content_png, encoded, running_server, tiny_studio

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'atelier[web]'")
pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install 'atelier[web]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")

from atelier.web.app import create_app  # noqa: E402

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("ATELIER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no system Chromium (apt-get install chromium, or set ATELIER_CHROMIUM)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_encoder):
    """The studio on a free local port, with one generated painting in its gallery."""
    gallery = tmp_path_factory.mktemp("gallery")
    (gallery / "stripes.png").write_bytes(encoded(stripes_image(48, 48, period=6)))
    studio = tiny_studio(tiny_encoder, gallery=[gallery], workers=2)
    with running_server(create_app(studio)) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda message: print("console:", message.text))
    page.on("pageerror", lambda error: print("page error:", error))
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")
    photo = tmp_path / "photo.png"
    photo.write_bytes(content_png(48, 64))
    page.set_input_files("#content-file", str(photo))
    page.wait_for_function("document.getElementById('content-name').textContent.includes('64×48')")
    yield page
    context.close()


def _previews(page) -> int:
    return int(page.get_attribute("#after", "data-previews") or 0)


def _result_hash(page) -> str:
    """The bytes of the image shown as the result, as text (to compare two results)."""
    return page.evaluate("""async () => {
        const data = new Uint8Array(await (await fetch(document.getElementById('after').src)).arrayBuffer());
        return Array.from(data).join(',');
    }""")


def _pick_style(page) -> None:
    page.click(".tile[data-ref='gallery:stripes']")
    try:
        page.wait_for_function("(document.getElementById('after').dataset.previews || 0) >= 1")
    except sync_api.TimeoutError:
        raise AssertionError(f"no preview; the page says: {page.text_content('#error')!r}") from None


def test_upload_a_photo_and_pick_a_style_shows_a_preview(page):
    _pick_style(page)
    assert page.get_attribute(".tile[data-ref='gallery:stripes']", "class").endswith("chosen")
    assert "--style stripes.png --method adain" in page.text_content("#command")
    assert page.text_content("#error") == ""


def test_moving_alpha_changes_the_preview(page):
    _pick_style(page)
    before = _result_hash(page)
    count = _previews(page)
    page.fill("#opt-alpha", "0.1")
    page.wait_for_function(f"(document.getElementById('after').dataset.previews || 0) > {count}")
    assert _result_hash(page) != before
    assert "--alpha 0.1" in page.text_content("#command")


def test_paint_a_mask_render_and_download_at_the_right_size(page, tmp_path):
    _pick_style(page)
    page.click("#paint-toggle")
    box = page.locator("#paint").bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] - 5, steps=8)
    page.mouse.up()
    page.fill("#size", "40")
    page.click("#render")
    page.wait_for_function("document.getElementById('result-info').textContent === 'full size'")
    assert "--mask mask1.png" in page.text_content("#command")
    page.select_option("#format", "jpeg")
    with page.expect_download() as download:
        page.click("#download")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    with Image.open(path) as image:
        assert (image.format, image.size) == ("JPEG", (40, 30))


def test_cancel_a_gatys_job(page):
    _pick_style(page)
    page.select_option("#method", "gatys")
    page.fill("#opt-iterations", "100000")
    page.fill("#opt-scales", "1")
    page.fill("#size", "48")
    page.click("#render")
    page.wait_for_function("document.getElementById('progress').value > 0")
    page.click("#cancel")
    page.wait_for_function("document.getElementById('status').textContent === 'stylize job cancelled'")
    page.wait_for_function("document.getElementById('result-info').textContent.startsWith('cancelled')")


def test_a_text_file_renamed_jpg_shows_the_error(page, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a picture")
    page.set_input_files("#content-file", str(fake))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert page.text_content("#error").startswith("holiday.jpg: not a readable image")
