"""Low-rank adapters (LoRA) on the classifier's encoder, and folding them back into it.

Why: a retraining that moves every encoder weight may forget more of what the champion
learnt, and its only compact record is a full copy. Measured against full fine-tuning
(docs/performance.md#retraining) it did not win clearly, so full fine-tuning stays the
retrainer's default. With LoRA the encoder's weights stay frozen;
each targeted Linear learns a rank-r update B A next to it (`peft`, the Hugging Face library,
injects and merges them) and only the adapters and the task heads train. The served model
must stay a plain model directory (the Predictor's unpadded path and its int8/compiled copies
read plain `nn.Linear` weights), so `merge_lora` folds W + (alpha / r) B A into each weight
and puts the plain Linear back: a LoRA-trained model saves, loads and serves like any other.

`adapter_state` is what a stored version needs besides its base model: the adapters and the
heads, 1.4 MB for MiniLM-L6 instead of its 91 MB.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file

from bert_core.config import LoraOptions
from bert_core.errors import ModelConfigError
from bert_core.model import MultiTaskClassifier

ADAPTER_NAME = "default"


def add_lora(model: MultiTaskClassifier, options: LoraOptions) -> int:
    """Freeze the encoder and give its targeted Linears trainable adapters (in place; the
    encoder keeps its class, so the unpadded inference path still recognises it). The heads
    stay trainable. Returns the number of trainable parameters."""
    if options.rank < 1:
        raise ModelConfigError(f"LoRA rank must be at least 1, not {options.rank}")
    if not options.target_modules:
        raise ModelConfigError("LoRA needs at least one target module name")
    for param in model.encoder.parameters():
        param.requires_grad_(False)
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules),
        bias="none",
    )
    try:
        inject_adapter_in_model(config, model.encoder, adapter_name=ADAPTER_NAME)
    except ValueError as exc:  # no module matched the target names
        raise ModelConfigError(f"LoRA: {' '.join(str(exc).split())[:300]}") from None
    for name, param in model.encoder.named_parameters():
        param.requires_grad_("lora_" in name)
    for param in model.heads.parameters():
        param.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def has_lora(model: MultiTaskClassifier) -> bool:
    return any(isinstance(m, LoraLayer) for m in model.encoder.modules())


def adapter_state(model: MultiTaskClassifier) -> dict[str, torch.Tensor]:
    """The adapters' and heads' weights (what differs from the base model besides them: nothing,
    the encoder is frozen), detached CPU copies keyed by their names in the wrapped model."""
    return {
        name: tensor.detach().cpu().contiguous().clone()
        for name, tensor in model.state_dict().items()
        if "lora_" in name or name.startswith("heads.")
    }


def merge_lora(model: MultiTaskClassifier) -> int:
    """Fold every adapter into its base weight and put the plain Linear back (in place).
    Returns how many layers were merged; the whole model is trainable again afterwards, as a
    freshly loaded one is."""
    wrapped = [
        (name, module) for name, module in model.encoder.named_modules() if isinstance(module, LoraLayer)
    ]
    for name, module in wrapped:
        module.merge(adapter_names=[ADAPTER_NAME])
        base = module.get_base_layer()
        parent_name, _, child = name.rpartition(".")
        parent = model.encoder.get_submodule(parent_name) if parent_name else model.encoder
        setattr(parent, child, base)
    for param in model.parameters():
        param.requires_grad_(True)
    return len(wrapped)


def save_adapter(path: str | Path, adapter: Mapping[str, torch.Tensor], *, base_version: str | None) -> int:
    """Write an `adapter_state` as safetensors, the base model's version in its metadata (the
    adapters mean nothing without it). Returns the file's size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(dict(adapter), str(path), metadata={"format": "pt", "base_version": base_version or ""})
    return path.stat().st_size
