"""What the CPU can do, read once per process from /proc/cpuinfo (Linux; elsewhere: nothing),
which of torch's oneDNN ops this build has, and whether the machine can compile the pass."""

from __future__ import annotations

import functools
import os
import shutil
import sysconfig
from pathlib import Path


@functools.cache  # the flags do not change while the process runs
def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


# The instruction sets that decide torch's speed on a CPU, by /proc/cpuinfo flag:
# AVX2 (the baseline of fast fp32 kernels), AVX-512, VNNI (int8 dot products: the int8
# path), bf16 and AMX (native bf16: the bf16 paths).
CPU_FEATURE_FLAGS: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "vnni": ("avx512_vnni", "avx_vnni"),
    "bf16": ("avx512_bf16", "amx_bf16"),
    "amx": ("amx_bf16",),
}


def cpu_features(flags: str | None = None) -> dict[str, bool]:
    """Which of CPU_FEATURE_FLAGS this CPU has (`flags`: a /proc/cpuinfo text; default: this
    machine's). All False where /proc/cpuinfo cannot be read."""
    words = set((_cpu_flags() if flags is None else flags).split())
    return {name: any(f in words for f in alternatives) for name, alternatives in CPU_FEATURE_FLAGS.items()}


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AVX512-BF16 or AMX).

    Without them torch emulates bf16 and runs 7x slower than fp32, so every bf16 path in
    finsent (inference and mixed-precision training) is chosen only where this is true.
    """
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_amx_bf16() -> bool:
    """True when the CPU has AMX tiles for bf16 (Intel Sapphire Rapids and later), where
    bf16 inference is 2-2.5x any int8 path measured (docs/performance.md#precision)."""
    return "amx_bf16" in _cpu_flags()


def onednn_has_ops(namespace: str, *names: str) -> bool:
    """True where torch is built with oneDNN and `torch.ops.<namespace>` has every op named
    (x86 builds have the prepacked and quantised linear ops; other builds may lack them)."""
    import torch  # here, not at the top: reading the CPU's flags must not cost importing torch

    try:
        ops = getattr(torch.ops, namespace)
        return torch.backends.mkldnn.is_available() and all(hasattr(ops, name) for name in names)
    except (AttributeError, RuntimeError):
        return False


def compiler_command() -> str:
    """The C++ compiler inductor runs on Linux: `$CXX`, else g++."""
    return os.environ.get("CXX") or "g++"


def compiler_available() -> bool:
    """True where inductor can build its C++ kernels: its C++ compiler and Python's headers.

    Torch-free, so `finsent run` can decide before starting a worker whether to serve compiled.
    """
    include = sysconfig.get_paths().get("include")
    has_headers = include is not None and (Path(include) / "Python.h").is_file()
    return has_headers and shutil.which(compiler_command().split()[0]) is not None
