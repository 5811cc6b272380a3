"""Screenshots of the studio for the README (real networks, Debian's chromium via Playwright).

    .venv/bin/python benchmarks/web_screenshots.py     # writes docs/web_empty.jpg, web_result.jpg, web_mask.jpg

Serves the studio in-process with the repository's examples/ as its gallery, then: the page
empty; examples/garden.jpg with the Van Gogh painting by AdaIN at α 0.8 (a full-size render at
384 px, compare slider in the middle); the same with two styles placed by a painted mask.
"""

from __future__ import annotations

import io
import shutil
import socket
import sys
import threading
import time

import uvicorn
from PIL import Image
from playwright.sync_api import sync_playwright

from atelier.web.app import create_app
from atelier.web.studio import Studio, StudioSettings
from common import DATA, ROOT, find_image, jpeg_quality

DOCS = ROOT / "docs"


def save(png: bytes, name: str) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    quality = jpeg_quality(image, 240)
    image.save(DOCS / name, "JPEG", quality=quality, optimize=True)
    print(f"wrote docs/{name} ({(DOCS / name).stat().st_size // 1024} KB, quality {quality})")


def main() -> int:
    gallery = [ROOT / "examples", DATA / "style"]
    studio = Studio(StudioSettings(gallery=[g for g in gallery if g.is_dir()], preview_size=256))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(studio), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(300_000)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_load_state("networkidle")  # the gallery's thumbnails
        save(page.screenshot(), "web_empty.jpg")
        page.set_input_files("#content-file", str(ROOT / "examples" / "garden.jpg"))
        page.wait_for_function("document.getElementById('content-name').textContent.length > 0")
        page.click(".tile[data-ref='gallery:van_gogh_wheat_field_with_cypresses']")
        page.wait_for_function("(document.getElementById('after').dataset.previews || 0) >= 1")
        page.fill("#opt-alpha", "0.8")
        page.fill("#size", "384")
        page.click("#render")
        page.wait_for_function("document.getElementById('result-info').textContent === 'full size'")
        page.fill("#compare-pos", "55")
        page.dispatch_event("#compare-pos", "input")
        page.evaluate("window.scrollTo(0, 0)")
        save(page.screenshot(), "web_result.jpg")
        second = find_image(DATA / "style", "mondrian").stem
        page.click(f".tile[data-ref='gallery:{second}']")
        page.fill("#compare-pos", "100")
        page.dispatch_event("#compare-pos", "input")
        page.click("#paint-toggle")
        box = page.locator("#paint").bounding_box()
        for index, (x0, x1) in enumerate(((0.05, 0.45), (0.55, 0.95))):
            page.click(f"#brush-list button[data-index='{index}']")
            for row in range(4):
                y = box["y"] + box["height"] * (0.15 + 0.12 * row)
                page.mouse.move(box["x"] + box["width"] * x0, y)
                page.mouse.down()
                page.mouse.move(box["x"] + box["width"] * x1, y, steps=10)
                page.mouse.up()
        page.click("#paint-toggle")  # painting off: the strokes fade so the result shows
        page.click("#render")
        page.wait_for_function("document.getElementById('command').textContent.includes('--mask')")
        page.evaluate("window.scrollTo(0, 0)")
        save(page.screenshot(), "web_mask.jpg")
        browser.close()
    server.should_exit = True
    studio.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
