"""Live-preview latency of the studio: α moves, one preview request per move (real AdaIN weights).

    .venv/bin/python benchmarks/web_preview.py          # --moves 10 --preview-size 256

In-process (FastAPI's TestClient, no network): one content and one style upload, a first preview
(networks loaded, style encoded and remembered), then --moves previews at other α values, one after
another, as the page sends them after its 250 ms debounce. Prints the first and the median/max of
the moves: the style is not encoded again, so a move costs the content's encode, the blend and the
decode at preview size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from fastapi.testclient import TestClient

from atelier.web.app import create_app
from atelier.web.studio import Studio, StudioSettings
from common import DATA, find_image, rel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--preview-size", type=int, default=256)
    parser.add_argument("--method", default="adain")
    args = parser.parse_args()
    content, style = find_image(DATA / "content", "golden_gate"), find_image(DATA / "style", "la_muse")
    with TestClient(create_app(Studio(StudioSettings(preview_size=args.preview_size)))) as client:
        ids = [client.post("/api/uploads", files={"file": (p.name, p.read_bytes())}).json()["id"]
               for p in (content, style)]
        body = {"content": ids[0], "styles": [f"upload:{ids[1]}"], "method": args.method, "preview": True}
        start = time.perf_counter()
        client.post("/api/stylize", json={**body, "options": {"alpha": 1.0}}).raise_for_status()
        first = time.perf_counter() - start
        times = []
        for move in range(args.moves):
            start = time.perf_counter()
            response = client.post("/api/stylize", json={**body, "options": {"alpha": round(0.1 + 0.08 * move, 2)}})
            response.raise_for_status()
            times.append(time.perf_counter() - start)
    print(f"{args.method} previews at {args.preview_size} px of {rel(content)} x {rel(style)}: first (networks "
          f"loaded, style encoded) {first:.2f} s; {args.moves} α moves: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
