"""Lazy package exports (PEP 562), shared by `bert_core` and `bert_core.inference`.

Why: a CLI start-up, `bert_core.errors` or the torch-free names (`Prediction`, labels,
manifests) must not pay for importing torch and transformers; each name is imported from its
module on first use and then cached in the package's namespace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The package's module-level `__getattr__`: `exports` maps a public name to its module."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
