"""What an analyst waits for: page renders of the real dashboard in headless Chromium, on the
year of news that benchmarks/dashboard_queries.py seeds (run that first).

Usage:
    nice -n 5 .venv/bin/python benchmarks/dashboard_render.py [--database finsent_bench_dashboard] [--runs 3]

`finsent dashboard` serves the benchmark database; Playwright drives Debian's Chromium
(/usr/bin/chromium, as in tests/dashboards/test_dashboard_browser.py) through a login and
then, each timed from the click (or keystroke) to the moment the new content is on screen:
the overview on its default range (last 24 hours), the overview switched to the last 365
days, the news browser, and a full-text search in it. The query cache is switched off
(FINSENT_DASHBOARD_CACHE_SECONDS=0), so every run pays the uncached queries, as the first
analyst after the TTL does; a second server with the default TTL gives the cached figures.
This adds what the query benchmark leaves out: Streamlit's script rerun, the websocket,
React and Vega rendering. Results: benchmarks/results/dashboard_render.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from dashboard_queries import database_url, seeded_meta  # noqa: E402
from result_file import finish, machine, result_path, write_json  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "bench", "benchmark password"


@contextmanager
def dashboard(url: str, home: Path, cache_seconds: str) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env |= {
        "FINSENT_DATABASE_URL": url,
        "FINSENT_HOME": str(home),
        "FINSENT_DASHBOARD_USERS_FILE": str(home / "users.toml"),
        "FINSENT_DASHBOARD_CACHE_SECONDS": cache_seconds,
    }
    finsent = str(Path(sys.executable).with_name("finsent"))
    subprocess.run(
        [finsent, "dashboard", "users", "add", USER, "--role", "analyst", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (home / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [finsent, "dashboard", "--port", str(port)],
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"finsent dashboard did not start: see {home / 'dashboard.log'}")
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def timed(action: Callable[[], None], done: Callable[[], None]) -> float:
    t = time.perf_counter()
    action()
    done()
    return (time.perf_counter() - t) * 1000


def run_once(browser: Any, base: str) -> dict[str, float]:
    """One analyst session; each step from the user's action to its content on screen."""
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.set_default_timeout(60_000)
    grid = '[role="gridcell"]'
    page.goto(base)
    page.get_by_label("User name", exact=True).fill(USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    out: dict[str, float] = {}

    def overview_shown(caption: str) -> Callable[[], None]:
        def wait() -> None:
            page.get_by_text(caption).wait_for()
            page.locator(
                '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
            ).first.wait_for()
            page.locator(grid).first.wait_for(state="attached")

        return wait

    out["login -> overview, last 24 h"] = timed(
        lambda: page.get_by_role("button", name="Log in").click(), overview_shown("5-minute buckets")
    )

    def pick(option: str) -> None:
        page.get_by_label("Time range").first.click()  # the overview's select
        page.get_by_role("option", name=option, exact=True).click()

    out["overview -> last 365 days"] = timed(lambda: pick("last 365 days"), overview_shown("24-hour buckets"))

    def news_shown() -> None:
        page.get_by_text("stories match").wait_for()
        page.locator(grid).first.wait_for(state="attached")

    out["open news browser (24 h)"] = timed(
        lambda: page.get_by_role("link", name="News browser").click(), news_shown
    )

    def search(term: str) -> Callable[[], None]:
        def act() -> None:
            box = page.get_by_label("Search headlines", exact=True)
            box.fill(term)
            box.press("Enter")

        return act

    def first_row_matches(term: str) -> Callable[[], None]:
        def wait() -> None:
            page.locator(grid, has_text=term[:7]).first.wait_for(state="attached")
            page.get_by_text("stories match").wait_for()

        return wait

    out["news browser -> last 365 days"] = timed(
        lambda: pick("last 365 days"), lambda: page.get_by_text("10,000+ stories match").wait_for()
    )
    out["search 'bankruptcy' (365 days)"] = timed(search("bankruptcy"), first_row_matches("bankruptcy"))
    page.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", default="finsent_bench_dashboard")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=result_path("dashboard_render"))
    args = ap.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit(f"no browser at {CHROMIUM}: run scripts/install_browser.sh first")
    meta = seeded_meta(args.database)
    if not meta:
        sys.exit(f"{args.database} is not seeded: run benchmarks/dashboard_queries.py first")
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, list[float]]] = {}
    info = machine()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for label, ttl in (("uncached (TTL 0)", "0"), ("cached (TTL 30 s, repeat views)", "30")):
                home = Path(tmp) / label.split()[0]
                home.mkdir()
                with dashboard(database_url(args.database), home, ttl) as base:
                    runs = [run_once(browser, base) for _ in range(args.runs)]
                results[label] = {step: [round(r[step], 1) for r in runs] for step in runs[0]}
        finally:
            browser.close()
    print(f"{'step':34} " + "  ".join(f"{k[:30]:>30}" for k in results))
    steps = next(iter(results.values()))
    for step in steps:
        cells = [
            f"p50 {statistics.median(v[step]):6.0f}  max {max(v[step]):6.0f} ms" for v in results.values()
        ]
        print(f"{step:34} " + "  ".join(f"{c:>30}" for c in cells))
    payload = {
        "items": meta["items"],
        "runs": args.runs,
        "machine": finish(info),
        "note": "ms from the action to its content on screen; first run of the cached server is uncached",
        "results": results,
    }
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
