"""Which model a worker or `finsent run` serves (services/learning/serving.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.learning.serving import (
    ServingError,
    after_refusal,
    check_pinned,
    choose_model,
    expected_model,
    follows_registry,
    is_model_dir,
    worker_model,
)
from services.scorer.model_reload import ModelRef
from services.settings import Settings

CHAMPION = ModelRef("v3", Path("/models/v3"), "ab" * 32)


def _save_manifest(model_dir: Path) -> Path:
    model_dir.mkdir(parents=True)
    (model_dir / "manifest.json").write_text("{}", encoding="utf-8")
    return model_dir


def test_pinned_then_champion_then_bootstrap() -> None:
    bootstrap = Path("/home/models/default")
    pinned = Path("/elsewhere/model")
    assert choose_model(pinned=pinned, champion=CHAMPION, bootstrap=bootstrap, bootstrap_ready=True) == pinned
    assert choose_model(pinned=None, champion=CHAMPION, bootstrap=bootstrap, bootstrap_ready=True) == CHAMPION
    assert choose_model(pinned=None, champion=None, bootstrap=bootstrap, bootstrap_ready=True) == bootstrap


def test_doctor_names_where_the_expected_model_comes_from() -> None:
    bootstrap, champion, pinned = Path("/b"), Path("/c"), Path("/p")
    assert expected_model(pinned=pinned, champion=champion, bootstrap=bootstrap) == (pinned, "FINSENT_MODEL")
    assert expected_model(pinned=None, champion=champion, bootstrap=bootstrap) == (
        champion,
        "the registry's champion",
    )
    assert expected_model(pinned=None, champion=None, bootstrap=bootstrap) == (
        bootstrap,
        "the bootstrap model",
    )


def test_no_model_at_all_says_how_to_get_one() -> None:
    with pytest.raises(ServingError, match="no model: register one with `finsent models register DIR"):
        choose_model(
            pinned=None, champion=None, bootstrap=Path("/home/models/default"), bootstrap_ready=False
        )


def test_a_refused_champion_falls_back_to_the_bootstrap_model_only_if_there_is_one() -> None:
    bootstrap = Path("/home/models/default")
    assert after_refusal("v3", "sha256 differs", bootstrap=bootstrap, bootstrap_ready=True) == bootstrap
    with pytest.raises(ServingError, match="the registry's champion v3 cannot be served: sha256 differs"):
        after_refusal("v3", "sha256 differs", bootstrap=bootstrap, bootstrap_ready=False)


def test_the_bootstrap_model_counts_once_its_manifest_is_saved(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert not is_model_dir(settings.default_model_dir)
    _save_manifest(settings.default_model_dir)
    assert is_model_dir(settings.default_model_dir)


def test_a_pinned_worker_ignores_the_registry(tmp_path: Path) -> None:
    pinned = _save_manifest(tmp_path / "other")
    settings = Settings(home=tmp_path, model=pinned)

    def no_registry() -> None:
        raise AssertionError("a pinned worker must not look at the registry")

    assert worker_model(settings, no_registry) == pinned  # type: ignore[arg-type]
    assert not follows_registry(settings)
    assert follows_registry(Settings(home=tmp_path))


def test_a_pinned_directory_must_exist_and_hold_a_model(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ServingError, match=f"FINSENT_MODEL={missing}: no such directory"):
        worker_model(Settings(home=tmp_path, model=missing), lambda: None)  # type: ignore[arg-type,return-value]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ServingError, match="is not a finsent model directory"):
        check_pinned(empty)
    check_pinned(None)
    check_pinned(_save_manifest(tmp_path / "saved"))


def test_a_pinned_directory_that_is_not_there_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    with pytest.raises(ServingError) as caught:
        check_pinned(missing)
    assert str(caught.value) == f"{missing}: no such directory"
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"")
    with pytest.raises(ServingError) as caught:
        check_pinned(a_file)
    assert str(caught.value) == f"{a_file}: not a directory (give a finsent model directory)"
