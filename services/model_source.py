"""Which model directory a service serves: FINSENT_MODEL, else the bootstrap model.

(The model registry of a later issue slots in between the two.) One function, so the
worker and `finsent run` can never disagree about it.
"""

from __future__ import annotations

from pathlib import Path

from services.settings import Settings


def resolve_model_dir(settings: Settings) -> Path | None:
    """The configured model directory, or the bootstrap model if one was saved, else None."""
    if settings.inference.model is not None:
        return settings.inference.model
    bootstrap = settings.default_model_dir
    if (bootstrap / "manifest.json").is_file():
        return bootstrap
    return None
