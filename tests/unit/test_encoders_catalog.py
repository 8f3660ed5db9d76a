"""How records meant for other machines name an encoder (`bert_core.encoders.encoder_label`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bert_core.encoders import encoder_label


@pytest.mark.parametrize(
    ("base_model", "label"),
    [
        ("/root/.finsent/models/encoders/mpnet-base", "mpnet-base"),  # an installed encoder's folder
        ("/srv/finsent/models/encoders/mpnet-base/", "mpnet-base"),
        ("MPNet-Base", "mpnet-base"),  # a catalogue name, any case
        ("minilm", "minilm"),
        ("/data/encoders/finbert", "/data/encoders/finbert"),  # not in the catalogue: as given
        ("", ""),
    ],
)
def test_a_catalogue_encoder_is_named_and_anything_else_kept(base_model: str, label: str) -> None:
    assert encoder_label(base_model) == label


def test_the_label_is_not_the_local_path(tmp_path: Path) -> None:
    folder = tmp_path / "encoders" / "mpnet-base"
    assert str(tmp_path) not in encoder_label(str(folder))
