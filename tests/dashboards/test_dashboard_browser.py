"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

AppTest runs the pages' scripts but never the frontend, so it cannot show that a hostile
headline stays text once React, the data grid and the websocket protocol are involved, nor
what an analyst actually sees. Here the real server (`finsent dashboard`, a child process,
as an operator starts it) serves a seeded PostgreSQL database, a user made with
`finsent dashboard users add` logs in through the form, and the overview and the news
browser are screenshotted once they show data.

The browser is /usr/bin/chromium from Debian (scripts/test.sh installs it): Playwright's
own browser download cannot work without internet. A missing browser fails the test; it is
never skipped, or CI would go green without ever having looked at the page.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dashboard_seed as seed
import pytest

from services.storage import get_dashboard_user, make_engine, session_factory

# The integration suite's PostgreSQL helper (create / drop a database); its package lives
# beside this directory, which has no __init__.py (see dashboard_support.py for why).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from integration.conftest import fresh_postgres_database

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# As on this machine's notes: without the background-networking flags Chromium keeps
# trying to reach Google's hosts, which the closed network refuses.
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
USER = "anna"
PASSWORD = "correct horse battery"
TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 1700}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _finsent() -> Path:
    exe = Path(sys.executable).with_name("finsent")
    if not exe.exists():
        pytest.fail(f"{exe} not found: install the project (bash scripts/setup.sh)")
    return exe


@dataclass(frozen=True)
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One seeded database and one server for the module (each test opens its own browser
    context, so their logins do not mix)."""
    with fresh_postgres_database() as url:
        yield from _serve(url, tmp_path_factory.mktemp("dashboard"))


def _serve(url: str, tmp_path: Path) -> Iterator[Server]:
    seed.seed(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env |= {
        "FINSENT_DATABASE_URL": url,
        "FINSENT_HOME": str(tmp_path / "home"),
        "FINSENT_DASHBOARD_USERS_FILE": str(tmp_path / "users.toml"),
    }
    # The product's own user tooling hashes the password (bcrypt, default cost).
    added = subprocess.run(
        [_finsent(), "dashboard", "users", "add", USER, "--role", "analyst", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert not (tmp_path / "users.toml").exists()  # into the database, not a per-host file
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            stored = get_dashboard_user(session, USER)
    finally:
        engine.dispose()
    assert stored is not None and (stored.password_hash or "").startswith("$2b$")

    port = _free_port()
    log = tmp_path / "dashboard.log"
    with log.open("w") as out:
        # cwd: the temporary directory, so no .streamlit/ (secrets, OIDC) of a checkout applies.
        # Own session: the CLI's Streamlit child is ended with it, by process group.
        proc = subprocess.Popen(
            [_finsent(), "dashboard", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, log)
        yield Server(base, log)
    finally:
        _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"finsent dashboard exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"finsent dashboard not healthy after {timeout:.0f} s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as systemd stops it; the group kill is the backstop for anything left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: bash scripts/install_browser.sh installs Debian's chromium "
            "(apt-get; scripts/test.sh runs it)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed ({exc}): run scripts/setup.sh (dev extras)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _settle(page: object) -> None:
    """No requests in flight and two animation frames drawn: the data grids paint their
    canvas a frame after their cells exist, and a screenshot before that shows empty boxes."""
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
    page.evaluate(  # type: ignore[attr-defined]
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 300))))"
    )


def _hostile_markup(page: object) -> dict[str, int]:
    """What the headlines' markup would have become had it been parsed as HTML."""
    return page.evaluate(  # type: ignore[attr-defined, no-any-return]
        """() => ({
            scripts: [...document.querySelectorAll('script')]
                .filter(s => s.textContent.includes('alert(1)')).length,
            imgs: [...document.querySelectorAll('img')]
                .filter(i => i.getAttribute('src') === 'x' || i.hasAttribute('onerror')).length,
        })"""
    )


def test_without_login_only_the_login_form(server: Server, browser: object) -> None:
    """First in this module on purpose: it must meet a server nobody has logged in to yet
    (Streamlit's page list is per server, and a logged-in session's navigation replaces it)."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    # The app's root and a page's own URL alike.
    for path in ("/", "/news"):
        page.goto(server.url + path)
        page.get_by_label("User name", exact=True).wait_for()
        page.get_by_role("button", name="Log in").wait_for()
        page.wait_for_load_state("networkidle")
        text = page.locator("body").inner_text()
        for hidden in ("Sentiment overview", "News browser", "Oil majors", "Log out", "stories match"):
            assert hidden not in text, (path, hidden)
        nav = page.locator('[data-testid="stSidebarNav"]')
        assert nav.count() == 0, f"{path}: pages listed without a login: {nav.all_inner_texts()}"
        assert page.locator('[role="grid"], [data-testid="stVegaLiteChart"]').count() == 0

    # A wrong password keeps it that way.
    page.get_by_label("User name", exact=True).fill(USER)
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Unknown user name or wrong password.").wait_for()
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    context.close()


def test_overview_and_news_browser_in_chromium(
    server: Server, browser: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    page.goto(server.url)
    page.get_by_label("User name", exact=True).fill(USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # Overview: the default range (the last 24 hours before the newest story) holds all of it.
    page.get_by_role("heading", name="Sentiment overview").wait_for()
    page.locator('[data-testid="stMetricValue"]', has_text=f"{seed.MINUTES:,}").first.wait_for()
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    chart.wait_for()
    chart.locator("canvas, svg").first.wait_for()
    # The tables: the seeded market alert (resolved) and the topics of the range.
    page.locator('[role="gridcell"]', has_text="resolved").first.wait_for(state="attached")
    page.locator('[role="gridcell"]', has_text="Energy / Oil").first.wait_for(state="attached")
    _settle(page)
    overview_png = shots / "dashboard-overview.png"
    page.screenshot(path=str(overview_png))
    assert page.get_by_text(f"{USER} (analyst)").is_visible()

    # News browser: the newest stories, the hostile headlines among them, as data-grid cells.
    page.get_by_role("link", name="News browser").click()
    page.get_by_role("heading", name="News browser").wait_for()
    script_cell = page.locator('[role="gridcell"]', has_text="Oil majors plunge on supply glut")
    img_cell = page.locator('[role="gridcell"]', has_text="Crude slumps as OPEC talks fail")
    script_cell.first.wait_for(state="attached")
    img_cell.first.wait_for(state="attached")
    _settle(page)
    news_png = shots / "dashboard-news.png"
    page.screenshot(path=str(news_png))

    # The markup arrived as literal text and was never parsed: no script ran, no element exists.
    assert script_cell.first.text_content() == seed.SCRIPT_HEADLINE
    assert img_cell.first.text_content() == seed.IMG_HEADLINE
    assert _hostile_markup(page) == {"scripts": 0, "imgs": 0}

    # Full-text search through the form (PostgreSQL's websearch on the GIN index): one story.
    search = page.get_by_label("Search headlines", exact=True)
    search.fill("supply glut")
    search.press("Enter")
    page.locator('[role="grid"][aria-rowcount="2"]').wait_for(state="attached")
    assert page.locator('[role="gridcell"]', has_text="Crude slumps").count() == 0
    assert script_cell.first.text_content() == seed.SCRIPT_HEADLINE
    assert _hostile_markup(page) == {"scripts": 0, "imgs": 0}
    assert dialogs == [], f"a dialog fired: {dialogs}"
    context.close()

    for png in (overview_png, news_png):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
    with capsys.disabled():
        print(f"\ndashboard screenshots: {shots}")
    assert "Traceback" not in server.log.read_text(), server.log.read_text()
