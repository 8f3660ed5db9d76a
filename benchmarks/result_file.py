"""The one result file each benchmark keeps, `benchmarks/results/<benchmark>.json`, and the
machine it records.

A figure in docs/performance.md is a measurement on one machine: VMs of one CPU kind differ
by up to 2x and the speed targets depend on the CPU's matrix units, so every result says which
CPU (model name, family/model, matrix units), how many cores, how loaded, when, and the exact
command that made it. A new run replaces the file; earlier runs live in git history.
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
    """One line for a Markdown result: the machine the table was measured on."""
    units = ", ".join(info.get("matrix_units") or []) or "no AVX2"
    return (
        f"{info['cpu']} (family {info.get('cpu_family')} model {info.get('cpu_model')}; {units}), "
        f"{info['cpu_count']} cores, load {info['loadavg_start'][0]} at the start, {info['date']}"
    )


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")
