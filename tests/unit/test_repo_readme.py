"""The README is a user's guide of at most 300 lines whose two commands keep their promises:
command 1 (`scripts/setup.sh`) needs only Python and pip — no apt, no sudo — and command 2
(`scripts/test.sh`) is shown with a sample of what it prints."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_README_LINES = 300
# A command word, not a substring: `apt` in `adapt` or `aptitude`'s cousin words does not count.
SYSTEM_INSTALL = re.compile(r"(?<![\w./-])(sudo|apt-get|apt)(?![\w-])")


def test_readme_is_at_most_300_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; at most {MAX_README_LINES}: move reference material to docs/"
    )


def scripts_run_by(script: Path, seen: set[Path] | None = None) -> set[Path]:
    """`script` and every repository script it runs (`bash scripts/x.sh`, `source`, `.`), recursively."""
    seen = set() if seen is None else seen
    if script in seen:
        return seen
    seen.add(script)
    for line in script.read_text(encoding="utf-8").splitlines():
        code = line.split("#", 1)[0]
        for name in re.findall(r"(?:bash|sh|source|\.)\s+(?:\"?\$\S*/)?(scripts/[\w./-]+\.sh)", code):
            scripts_run_by(ROOT / name, seen)
    return seen


def system_installs(script: Path) -> list[str]:
    """The lines of `script` (comments left out) that call apt, apt-get or sudo."""
    found = []
    for number, line in enumerate(script.read_text(encoding="utf-8").splitlines(), start=1):
        code = line.split("#", 1)[0]
        if SYSTEM_INSTALL.search(code):
            found.append(f"{script.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_setup_needs_only_python_and_pip() -> None:
    """Command 1 runs on a machine without apt or sudo: neither setup.sh nor a script it runs calls them."""
    scripts = scripts_run_by(ROOT / "scripts" / "setup.sh")
    offending = [line for script in sorted(scripts) for line in system_installs(script)]
    assert offending == [], offending


def test_the_check_sees_a_system_install_where_there_is_one() -> None:
    """The same check on test.sh, which installs the browser with apt on purpose, finds it."""
    scripts = scripts_run_by(ROOT / "scripts" / "test.sh")
    assert ROOT / "scripts" / "install_browser.sh" in scripts
    assert any("apt-get" in line for line in system_installs(ROOT / "scripts" / "install_browser.sh"))
    assert SYSTEM_INSTALL.search("sudo -n apt-get install chromium")
    assert not SYSTEM_INSTALL.search("adapt the aptitude of .apt files")


def test_command_2_is_shown_with_a_sample_of_its_output() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**Command 2**") :]
    sample = re.search(r"```\n(.*?)\n```", section, re.S)
    assert sample is not None, "no sample of command 2's output after its description"
    lines = sample[1].splitlines()
    assert lines[0].startswith("finsent installed in .venv (torch ")  # what setup.sh prints last
    summary = r"=+ \d+ passed(, \d+ \w+)* in \d+\.\d+s( \(\d+:\d\d:\d\d\))? =+"  # pytest's last line
    assert re.fullmatch(summary, lines[-1]), lines[-1]


def test_the_commands_durations_are_cited_not_copied() -> None:
    """The two commands' times change with the machine and the suite: the README links the
    current figures rather than quoting a number that goes stale."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## What the two commands do") : text.index("## The dashboard")]
    assert "docs/performance.md#the-two-commands" in section
    assert not re.search(r"takes (about )?\d+ min", section), "quote docs/performance.md, not a time"
