"""The multi-task classifier: one shared encoder pass, one linear head per task."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from bert_core.config import Pooling
from bert_core.inference import unpadded


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Reduce token states to one vector per text (CLS token or masked mean)."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MultiTaskClassifier(nn.Module):
    """A pretrained encoder (BERT, MPNet, …: any Hugging Face `AutoModel` that takes input ids
    and an attention mask) with a classification head per task.

    All heads read the same pooled vector, so a text costs one encoder pass however
    many tasks are served. No token type ids are passed: MPNet has none, and BERT's are all 0
    for a single text anyway.
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
        label_names: Mapping[str, Sequence[str]],
        *,
        pooling: Pooling = "mean",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.packed_encode: Callable[[nn.Module, unpadded.PackedBatch], torch.Tensor] = unpadded.encode
        self.pooling: Pooling = pooling
        self.label_names = {task: list(names) for task, names in label_names.items()}
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {task: nn.Linear(hidden, len(names)) for task, names in self.label_names.items()}
        )
        for head in self.heads.values():
            assert isinstance(head, nn.Linear)
            nn.init.normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        tasks: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return logits per task (all tasks unless `tasks` narrows it)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = self.dropout(pool_hidden(hidden, attention_mask, self.pooling))
        wanted = tasks if tasks is not None else list(self.heads.keys())
        return {task: self.heads[task](pooled) for task in wanted}

    def forward_packed(
        self, batch: unpadded.PackedBatch, tasks: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Inference-only twin of `forward` on unpadded tokens (see `bert_core.inference.unpadded`);
        callers check `unpadded.supports(self.encoder)` first. The pass is `packed_encode`:
        `unpadded.encode`, or an inference copy's compiled one (`bert_core.inference.compiled`)."""
        hidden = self.packed_encode(self.encoder, batch)
        pooled = self.dropout(unpadded.pool(hidden, batch, self.pooling))
        wanted = tasks if tasks is not None else list(self.heads.keys())
        return {task: self.heads[task](pooled) for task in wanted}
