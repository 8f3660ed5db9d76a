"""CPU time of one training step of the packaged MiniLM, full fine-tuning against LoRA.

Process CPU time, not wall time, so the figure holds on a machine shared with other work:
one forward + backward + AdamW step on a random batch (32 texts x 30 tokens), bf16 autocast
where the CPU has bf16 units, one thread, 6 steps; the first is warm-up. The median goes to
benchmarks/results/retrain.json, entry "step cost, METHOD".

Usage: python benchmarks/retrain_step_cost.py [--method full|lora] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from result_file import machine, write_entry

from bert_core import LoraOptions, MultiTaskClassifier, add_lora, cpu_has_bf16, load_encoder


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--method", choices=("full", "lora"), default="full")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    info = machine()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    encoder, _tokenizer, _name = load_encoder(None)
    model = MultiTaskClassifier(encoder, {"sentiment": ["bearish", "bullish", "neutral"]})
    encoder.get_input_embeddings().weight.requires_grad_(False)  # as fine_tune does
    if args.method == "lora":
        add_lora(model, LoraOptions())
    ids = torch.randint(1000, 5000, (32, 30))
    mask = torch.ones_like(ids)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    bf16 = cpu_has_bf16()
    cpu = []
    for _ in range(args.steps):
        started = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids, mask)["sentiment"]
        logits.float().logsumexp(dim=-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        cpu.append(time.process_time() - started)
    median = statistics.median(cpu[1:])
    print(f"{args.method}: median CPU per step {median:.3f} s (bf16={bf16}), all {cpu}")
    result = {"method": args.method, "bf16": bf16, "median_cpu_s_per_step": median, "cpu_s_per_step": cpu}
    write_entry("retrain", f"step cost, {args.method}", result, info)


if __name__ == "__main__":
    main()
