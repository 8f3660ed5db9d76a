"""Links into the docs stay valid: code comments and setting descriptions cite doc sections
(`docs/performance.md#precision`), and the README and docs link to each other's sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("services", "bert_core", "dashboards", "benchmarks", "tests", "deploy", "scripts")
CITATION = re.compile(r"\b(docs/[\w.-]+\.md)#([\w-]+)")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#+\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def _code_files() -> list[Path]:
    files: list[Path] = []
    for folder in CODE_DIRS:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".sh", ".example", ".service"}]
    return files


def test_doc_sections_cited_in_code_exist() -> None:
    missing = []
    for path in _code_files():
        for doc, anchor in CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
            target = ROOT / doc
            if not target.is_file() or anchor not in heading_anchors(target):
                missing.append(f"{path.relative_to(ROOT)}: {doc}#{anchor}")
    assert not missing, "cited doc sections that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "benchmarks/README.md",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    ],
)
def test_relative_links_and_anchors_resolve(doc: str) -> None:
    path = ROOT / doc
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for link in MD_LINK.findall(text):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        target_name, _, anchor = link.partition("#")
        target = (path.parent / target_name).resolve() if target_name else path
        if not target.exists() or (
            anchor and target.suffix == ".md" and anchor not in heading_anchors(target)
        ):
            broken.append(link)
    assert not broken, f"{doc}: broken links {broken}"
