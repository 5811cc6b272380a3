"""Load test of `atelier serve`: concurrent API requests against a local server (real AdaIN weights).

    .venv/bin/python benchmarks/web_load.py            # --requests 20 --rounds 3 --size 256

Starts `atelier serve` as a subprocess (queue limit = --requests, default workers), uploads one
content photo and one style, then per round:
  1. --requests concurrent synchronous ``POST /api/stylize`` calls: all must come back 200 with an
     image (latency min / median / max);
  2. --requests + 1 jobs submitted at once with ``POST /api/jobs`` (at --job-size, so that none ends
     before the last arrives): --requests are accepted and one gets a 503 with its one-line message;
     the accepted jobs are polled until all are done.
The server's resident memory (VmRSS) is read after each round: flat means no growth per round.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from common import DATA, find_image, rel


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--job-size", type=int, default=512, help="size of the jobs of step 2")
    parser.add_argument("--method", default="adain")
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "atelier", "serve", "--port", str(port), "--queue", str(args.requests)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            deadline = time.time() + 120
            while True:
                try:
                    client.get("/api/methods")
                    break
                except httpx.TransportError:
                    if time.time() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.2)
            content = find_image(DATA / "content", "golden_gate")
            style = find_image(DATA / "style", "la_muse")
            ids = [client.post("/api/uploads", files={"file": (p.name, p.read_bytes())}).json()["id"]
                   for p in (content, style)]
            body = {"content": ids[0], "styles": [f"upload:{ids[1]}"], "method": args.method, "size": args.size}
            job_body = {**body, "size": args.job_size}
            client.post("/api/stylize", json=body).raise_for_status()  # warm-up: networks loaded once
            print(f"server pid {server.pid}, {args.method} at {args.size} px, {rel(content)} x {rel(style)}, "
                  f"{os.cpu_count()} cores; RSS after warm-up {rss_mib(server.pid):.0f} MiB")
            print("| round | sync: answered | latency min / median / max (s) | jobs accepted | refused | "
                  "jobs done | wall (s) | RSS after (MiB) |")
            print("|---|---:|---|---:|---|---:|---:|---:|")
            for round_index in range(1, args.rounds + 1):
                start = time.perf_counter()

                def call(_: int) -> tuple[int, float]:
                    began = time.perf_counter()
                    response = client.post("/api/stylize", json=body)
                    ok = response.status_code == 200 and response.content[:4] == b"\x89PNG"
                    return (200 if ok else response.status_code), time.perf_counter() - began

                with futures.ThreadPoolExecutor(args.requests) as pool:
                    results = list(pool.map(call, range(args.requests)))
                answered = sum(status == 200 for status, _ in results)
                others = sorted({status for status, _ in results if status != 200})
                latencies = sorted(t for _, t in results)
                # requests + 1 jobs at once, at the larger job size so none ends before the last arrives.
                with futures.ThreadPoolExecutor(args.requests + 1) as pool:
                    submitted = list(pool.map(lambda _: client.post("/api/jobs", json=job_body),
                                              range(args.requests + 1)))
                accepted = [r.json()["id"] for r in submitted if r.status_code == 202]
                refused = [r for r in submitted if r.status_code != 202]
                extra = refused[0] if refused else None
                done = 0
                for job_id in accepted:
                    while (state := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
                        time.sleep(0.1)
                    done += state["state"] == "done"
                wall = time.perf_counter() - start
                extra_text = "none refused" if extra is None else \
                    f"{len(refused)} x {extra.status_code}: {extra.json().get('error', '')}"
                print(f"| {round_index} | {answered}/{args.requests}{' ' + str(others) if others else ''} | "
                      f"{latencies[0]:.2f} / {statistics.median(latencies):.2f} / {latencies[-1]:.2f} | "
                      f"{len(accepted)}/{args.requests + 1} | {extra_text} | {done}/{len(accepted)} | {wall:.1f} | "
                      f"{rss_mib(server.pid):.0f} |")
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
        tail = output.strip().splitlines()[-3:]
        print("server exit", server.returncode, "| last lines:", " / ".join(tail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
