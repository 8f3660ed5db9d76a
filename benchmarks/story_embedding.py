"""Story clustering by the encoder's sentence embedding, against MinHash, on the labelled pairs.

Issue #30 asked which groups re-published headlines better: MinHash/LSH over word-pair
shingles (`services/stories`, measured by `story_pairs.py`) or cosine similarity of the
pooled vector the model already computes. This embeds both headlines of every pair in
tests/data/story_pairs.csv the way the model reads them (`normalize_text`, the model's own
tokenizer, max length and pooling) and prints precision / recall / F1 by cosine threshold,
the best threshold by F1, and how many of MinHash's misjudged pairs (at Jaccard 0.5, the
default) the embedding misjudges too. Then the cost per 256 headlines: the encoder pass,
the pooled vectors' extra output (copy out and L2-normalise) and the MinHash signatures.

    .venv/bin/python benchmarks/story_embedding.py --model ~/.finsent/models/bootstrap
    .venv/bin/python benchmarks/story_embedding.py --base     # all-MiniLM-L6-v2, not fine-tuned

Timings run on one torch thread (the MinHash step is single-threaded numpy too). Results:
benchmarks/results/story_embedding.json, one entry per encoder (`--base`, or `--model DIR`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from result_file import machine, write_entry
from story_pairs import linked, load

from bert_core import load_encoder, load_model_dir, normalize_text, packaged_base_model, pool_hidden, tokenize
from services.stories import band_key_matrix, normalise_headline, shingles, signatures

MINHASH_THRESHOLD = 0.5
BASE_MAX_LENGTH = 64  # the fine-tuned models' max length, so both read the same tokens
SLICE = 256


class Embedder:
    """An encoder, its tokenizer and pooling: the model's pooled vector, before the heads."""

    def __init__(self, encoder: torch.nn.Module, tokenizer: object, pooling: str, max_length: int) -> None:
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0)

    def hidden(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = tokenize(self.tokenizer, [normalize_text(t) for t in texts], self.max_length)  # type: ignore[arg-type]
        width = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        with torch.inference_mode():
            return self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask

    def embed(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch):
            hidden, mask = self.hidden(texts[start : start + batch])
            out.append(unit_vectors(hidden, mask, self.pooling))
        return np.concatenate(out)


def unit_vectors(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> np.ndarray:
    """The pooled vectors as L2-normalised numpy rows: what a story lookup would store."""
    with torch.inference_mode():
        pooled = pool_hidden(hidden, mask, pooling).float().numpy()  # type: ignore[arg-type]
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)


def scores(sims: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, float]:
    joined = sims >= threshold
    tp = int((joined & same).sum())
    fp = int((joined & ~same).sum())
    fn = int((~joined & same).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def median_ms(fn: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="a finsent model directory")
    which.add_argument("--base", action="store_true", help="the packaged all-MiniLM-L6-v2, mean pooling")
    parser.add_argument(
        "--lowest", type=float, default=0.80, help="lowest cosine threshold of the sweep (to 0.99)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds per step (median)")
    parser.add_argument(
        "--show-errors", action="store_true", help="print the pairs misjudged at the best threshold"
    )
    args = parser.parse_args()
    info = machine()
    torch.set_num_threads(1)

    if args.model is not None:
        loaded = load_model_dir(args.model.expanduser())
        embedder = Embedder(
            loaded.model.encoder, loaded.tokenizer, loaded.model.pooling, loaded.config.max_length
        )
        label = f"{args.model} (pooling {loaded.model.pooling}, max length {loaded.config.max_length})"
    else:
        encoder, tokenizer, _ = load_encoder(packaged_base_model())
        embedder = Embedder(encoder, tokenizer, "mean", BASE_MAX_LENGTH)
        label = f"packaged all-MiniLM-L6-v2, mean pooling, max length {BASE_MAX_LENGTH}"

    pairs = load()
    same = np.array([p[2] for p in pairs])
    vec_a = embedder.embed([p[0] for p in pairs])
    vec_b = embedder.embed([p[1] for p in pairs])
    sims = (vec_a * vec_b).sum(axis=1)
    print(f"{label}: {len(pairs)} pairs, {int(same.sum())} copies, {int((~same).sum())} distinct")
    print("| cosine ≥ | precision | recall | F1 | copies joined | distinct joined |")
    print("|---|---|---|---|---|---|")
    thresholds = [t / 100 for t in range(round(args.lowest * 100), 100)]
    table = [scores(sims, same, t) for t in thresholds]
    for m in table:
        row = (f"{m['threshold']:.2f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}")
        print(f"| {' | '.join(row)} | {m['tp']} | {m['fp']} |")
    best = max(table, key=lambda m: (m["f1"], m["threshold"]))
    print(
        f"best by F1: cosine ≥ {best['threshold']:.2f}: precision {best['precision']:.3f}, "
        f"recall {best['recall']:.3f}, F1 {best['f1']:.3f}"
    )

    minhash_joined = np.array([linked(a, b, MINHASH_THRESHOLD)[0] for a, b, _, _ in pairs])
    mh = scores(minhash_joined.astype(float), same, 0.5)
    print(
        f"MinHash at Jaccard ≥ {MINHASH_THRESHOLD}: precision {mh['precision']:.3f}, "
        f"recall {mh['recall']:.3f}, F1 {mh['f1']:.3f}"
    )
    minhash_wrong = minhash_joined != same
    embed_wrong = (sims >= best["threshold"]) != same
    print(
        f"MinHash misjudges {int(minhash_wrong.sum())} pairs; the embedding at {best['threshold']:.2f} "
        f"misjudges {int(embed_wrong.sum())}, {int((minhash_wrong & embed_wrong).sum())} of them the same"
    )
    if args.show_errors:
        for i in np.flatnonzero(embed_wrong | minhash_wrong):
            a, b, is_same, kind = pairs[i]
            who = (
                "both"
                if embed_wrong[i] and minhash_wrong[i]
                else ("embedding" if embed_wrong[i] else "minhash")
            )
            print(f"{'MISSED' if is_same else 'WRONG '} {who:9} cos {sims[i]:.3f} [{kind}]\n   {a}\n   {b}")

    # Cost per 256 real headlines (the first of every pair, repeated to fill the slice).
    texts = [p[0] for p in pairs]
    texts = (texts * (SLICE // len(texts) + 1))[:SLICE]
    batches = [texts[s : s + 64] for s in range(0, SLICE, 64)]
    states = [embedder.hidden(b) for b in batches]
    encoder_ms = median_ms(lambda: [embedder.hidden(b) for b in batches], max(3, args.rounds // 2))
    pooled_ms = median_ms(lambda: [unit_vectors(h, m, embedder.pooling) for h, m in states], args.rounds)
    minhash_ms = median_ms(
        lambda: band_key_matrix(signatures([shingles(normalise_headline(t)) for t in texts])), args.rounds
    )
    print(f"cost per {SLICE} headlines, 1 torch thread, median of {args.rounds} rounds:")
    print(f"  encoder pass (padded, 64 a batch, fp32): {encoder_ms:.1f} ms")
    print(f"  pooled vectors out of that pass (pool + copy + L2-normalise): {pooled_ms:.2f} ms")
    print(f"  MinHash (normalise + shingles + signatures + band keys): {minhash_ms:.1f} ms")
    result = {
        "encoder": label,
        "pairs": len(pairs),
        "sweep": table,
        "best": best,
        "minhash": mh,
        "misjudged": {
            "minhash": int(minhash_wrong.sum()),
            "embedding_at_best": int(embed_wrong.sum()),
            "both": int((minhash_wrong & embed_wrong).sum()),
        },
        "cost_ms_per_slice": {
            "slice": SLICE,
            "rounds": args.rounds,
            "encoder_pass": encoder_ms,
            "pooled_vectors": pooled_ms,
            "minhash": minhash_ms,
        },
    }
    entry = "base all-MiniLM-L6-v2" if args.base else f"model {args.model}"
    write_entry("story_embedding", entry, result, info)


if __name__ == "__main__":
    main()
