"""Masked-language-model domain-adaptive pre-training (BERT's pre-training objective).

Continuing MLM on finance headlines before fine-tuning teaches the encoder the
vocabulary of the domain (cashtags, tickers, "beats estimates") from unlabelled text.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM

from bert_core.batching import bucketed_batches, collate, tokenize
from bert_core.config import MlmConfig
from bert_core.encoder import load_encoder
from bert_core.errors import DataError, ModelIntegrityError
from bert_core.out_dir import new_dir_problem

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: torch.Tensor,
    special_tokens_mask: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mlm_probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: select 15% of real tokens; of those 80% → [MASK], 10% → random, 10% kept.

    Returns (inputs, labels) with labels = IGNORE_INDEX wherever no prediction is asked.
    Special tokens and padding are never selected.
    """
    labels = input_ids.clone()
    probs = torch.full(input_ids.shape, mlm_probability)
    probs.masked_fill_(special_tokens_mask.bool(), 0.0)
    selected = torch.bernoulli(probs, generator=generator).bool()
    labels[~selected] = IGNORE_INDEX
    inputs = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & selected
    inputs[to_mask] = mask_token_id
    # Half of the remaining 20% → random token, i.e. 10% of the selected ones.
    to_random = (
        torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & selected & ~to_mask
    )
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=torch.long)
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def pretrain_mlm(texts: Sequence[str], out_dir: str | Path, config: MlmConfig) -> dict[str, Any]:
    """Continue MLM training of the base encoder on `texts`; save a loadable encoder directory.

    The saved directory (safetensors + tokenizer) is a valid `--base-model` for fine-tuning.
    Returns a summary with the masked-token loss before and after. `out_dir` must not exist
    yet or be an empty directory (checked first: a run that could not save is refused before
    it starts, and an existing encoder is never written over).
    """
    out = Path(out_dir)
    problem = new_dir_problem(out)
    if problem is not None:
        raise ModelIntegrityError(problem)
    texts = [t for t in texts if t]
    if len(texts) < 2:
        raise DataError("MLM pre-training needs at least two non-empty texts")
    started = time.monotonic()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    _, tokenizer, base_name = load_encoder(config.base_model)
    # The packaged sentence encoder has no MLM head: it is initialised fresh and tied to
    # the input embeddings, which is why a short warm-up matters here.
    model = AutoModelForMaskedLM.from_pretrained(base_name, local_files_only=True, use_safetensors=True)
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise DataError(f"{base_name}: tokenizer has no [MASK] token; MLM is not possible")
    tokens = tokenize(tokenizer, texts, config.max_length)
    lengths = [len(t) for t in tokens]
    special = set(tokenizer.all_special_ids)
    pad_id = int(tokenizer.pad_token_id or 0)

    held_out = rng.permutation(len(tokens))[: min(512, max(1, len(tokens) // 10))].tolist()
    eval_gen_seed = config.seed + 1

    def eval_loss() -> float:
        gen = torch.Generator().manual_seed(eval_gen_seed)
        model.eval()
        total, count = 0.0, 0
        with torch.inference_mode():
            for start in range(0, len(held_out), 64):
                batch = collate(tokens, held_out[start : start + 64], pad_id)
                special_mask = _special_mask(batch.input_ids, special)
                inputs, labels = mask_tokens(
                    batch.input_ids,
                    special_mask,
                    mask_token_id=mask_id,
                    vocab_size=model.config.vocab_size,
                    generator=gen,
                    mlm_probability=config.mlm_probability,
                )
                out = model(input_ids=inputs, attention_mask=batch.attention_mask, labels=labels)
                n = int((labels != IGNORE_INDEX).sum())
                total += float(out.loss) * n
                count += n
        model.train()
        return total / max(count, 1)

    # The held-out texts are only evaluated on, never trained on.
    held_set = set(held_out)
    train_rows = [i for i in range(len(tokens)) if i not in held_set]
    train_lengths = [lengths[i] for i in train_rows]

    loss_before = eval_loss()
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup = int(total_steps * config.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / max(warmup, 1)
            if s < warmup
            else max(0.0, (total_steps - s) / max(total_steps - warmup, 1))
        ),
    )
    deadline = started + config.max_minutes * 60 if config.max_minutes else None
    bar = tqdm(total=total_steps, desc="mlm", unit="step", disable=not config.progress)
    model.train()
    step = 0
    for _epoch in range(config.epochs):
        for local_idx in bucketed_batches(train_lengths, config.batch_size, rng):
            batch = collate(tokens, [train_rows[j] for j in local_idx], pad_id)
            inputs, labels = mask_tokens(
                batch.input_ids,
                _special_mask(batch.input_ids, special),
                mask_token_id=mask_id,
                vocab_size=model.config.vocab_size,
                generator=generator,
                mlm_probability=config.mlm_probability,
            )
            loss = model(input_ids=inputs, attention_mask=batch.attention_mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if deadline is not None and time.monotonic() > deadline:
                break
        if deadline is not None and time.monotonic() > deadline:
            break
    bar.close()
    loss_after = eval_loss()
    out.mkdir(parents=True, exist_ok=True)
    # Save only the encoder: the MLM head is a pre-training tool, not part of the product.
    model.base_model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    summary = {
        "base_model": base_name,
        "texts": len(texts),
        "steps": step,
        "heldout_mlm_loss_before": round(loss_before, 4),
        "heldout_mlm_loss_after": round(loss_after, 4),
        "seconds": round(time.monotonic() - started, 1),
        "config": {k: v for k, v in asdict(config).items() if k != "progress"},
    }
    import json

    (out / "mlm_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("mlm done %s", summary)
    return summary


def _special_mask(input_ids: torch.Tensor, special_ids: set[int]) -> torch.Tensor:
    return torch.isin(input_ids, torch.tensor(sorted(special_ids), dtype=torch.long))
