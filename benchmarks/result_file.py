"""The one result file each benchmark keeps, `benchmarks/results/<benchmark>.json`, and the
machine it records.

A figure in docs/performance.md is a measurement on one machine: VMs of one CPU kind differ
by up to 2x and the speed targets depend on the CPU's matrix units, so every result says which
CPU (model name, family/model, matrix units), how many cores, how loaded, when, and the exact
command that made it. A new run replaces the file; earlier runs live in git history.

Two shapes, one file each: `write_result` for a benchmark measured by one command
(`{"benchmark", "machine", ...}`), `write_entry` for one measured in variants that are separate
commands (a database backend, a retraining method, an encoder): `{"benchmark", "entries":
{name: {"machine", ...}}}`, where a run replaces its own entry and keeps the other variants'.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MATRIX_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def result_path(benchmark: str, suffix: str = ".json") -> Path:
    """Where `benchmark`'s current result lives (a Markdown rendering takes `.md`)."""
    return RESULTS_DIR / f"{benchmark}{suffix}"


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if not key and fields:
                break  # the first processor's block is enough
            fields.setdefault(key, value.strip())
    return fields


def machine() -> dict[str, Any]:
    """CPU, cores, load, date and the command line of this run."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_family": info.get("cpu family"),
        "cpu_model": info.get("model"),
        "matrix_units": [f for f in MATRIX_FLAGS if f in flags],
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
    }


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """Stamp the load at the end of the run (a busy machine makes a figure a lower bound)."""
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def describe(info: dict[str, Any]) -> str:
    """One line for a Markdown result: the machine the table was measured on (what it recorded)."""
    cpu = info.get("cpu") or "not recorded"
    if info.get("cpu_family") not in (None, "not recorded"):
        units = ", ".join(info.get("matrix_units") or []) or "no AVX2"
        cpu += f" (family {info['cpu_family']} model {info.get('cpu_model')}; {units})"
    load = info.get("loadavg_start")
    load_text = f"load {load[0]} at the start" if isinstance(load, list) else "load not recorded"
    date = info.get("date", "date not recorded")
    return f"CPU {cpu}, {info.get('cpu_count', '?')} cores, {load_text}, {date}"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")  # default: dates, paths
    print(f"wrote {path}")


def write_result(
    benchmark: str, data: dict[str, Any], info: dict[str, Any], *, path: Path | None = None
) -> Path:
    """Replace `benchmark`'s current result with `data`, the machine (`info`, finished) inside."""
    out = path or result_path(benchmark)
    write_json(out, {"benchmark": benchmark, "machine": finish(info), **data})
    return out


def write_entry(
    benchmark: str, entry: str, data: dict[str, Any], info: dict[str, Any], *, path: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Replace the `entry` variant of `benchmark`'s current result, keeping the other variants'
    entries (each measured by its own command); returns every entry, for a Markdown rendering."""
    out = path or result_path(benchmark)
    entries: dict[str, dict[str, Any]] = {}
    if out.exists():
        entries = json.loads(out.read_text()).get("entries", {})
    entries[entry] = {"machine": finish(info), **data}
    write_json(out, {"benchmark": benchmark, "entries": entries})
    return entries
