"""What the CPU can do, read once per call from /proc/cpuinfo (Linux; elsewhere: nothing)."""

from __future__ import annotations

from pathlib import Path


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AVX512-BF16 or AMX).

    Without them torch emulates bf16 and runs 7x slower than fp32, so every bf16 path in
    finsent (inference and mixed-precision training) is chosen only where this is true.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
