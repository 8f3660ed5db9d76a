"""Time of one retraining with 500 new analyst labels on the real model, and what it changes on
the frozen and the recent holdout.

Usage:
    python benchmarks/retrain.py prepare --work DIR [--champion-minutes 10]
    python benchmarks/retrain.py run --work DIR [--labels 500] [--selection uncertain,random]
        [--method full|lora]

`prepare` splits the seed files (the packaged seed data, bert_core/seed_data) the way finsent
does: the stratified
dev split (seed 42, 10 %) is the frozen holdout and is never trained on; from the rest it
sets aside a pool of 600 texts per task as "future analyst labels" and trains the champion
(`finsent train`, time-boxed) on everything else, so the labels are news to the champion.

`run` makes a fresh SQLite database and FINSENT_HOME under DIR, registers the champion,
imports `--labels` labels from the pool (half per task, as an analyst would label them,
with their true labels; the label store sends its usual share to the recent holdout), then
runs one retraining with the default settings (warm start, replay, time budget) and prints
the stage timings and both models' metrics on both holdouts; once per `--selection` (the
least certain pool texts first, as the labelling queue orders them, then at random), each
in a fresh home. Results go to benchmarks/results/retrain.json and .md: entry "selection", or
"method full" / "method lora" with `--method` (a run replaces its own entry).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from result_file import describe, machine, result_path, write_entry

from bert_core import packaged_seed_data

REPO = Path(__file__).resolve().parents[1]
SEED_FILES = packaged_seed_data()
POOL_PER_TASK = 600


def prepare(work: Path, champion_minutes: float) -> None:
    from bert_core import load_task_files, split_sets

    work.mkdir(parents=True, exist_ok=True)
    split = split_sets(load_task_files(SEED_FILES), dev_fraction=0.1, seed=42)
    rng = random.Random(7)
    for task, data in split.train.items():
        order = list(range(len(data)))
        rng.shuffle(order)
        for name, rows in (("pool", order[:POOL_PER_TASK]), ("champion_train", order[POOL_PER_TASK:])):
            with (work / f"{name}_{task}.csv").open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["text", "label"])
                writer.writerows((data.texts[i], data.labels[i]) for i in rows)
        print(f"{task}: champion trains on {len(data) - POOL_PER_TASK}, pool {POOL_PER_TASK}")
    subprocess.run(
        [
            sys.executable, "-m", "services", "train",
            "--out", str(work / "champion"),
            "--sentiment-data", str(work / "champion_train_sentiment.csv"),
            "--topic-data", str(work / "champion_train_topic.csv"),
            "--max-minutes", str(champion_minutes),
        ],
        cwd=REPO,
        check=True,
    )  # fmt: skip


def write_labels(work: Path, n: int, selection: str) -> Path:
    """`n` pool texts (half per task) with their true labels. `random`: any pool texts;
    `uncertain`: the ones the champion is least sure of (smallest top-2 sentiment margin,
    lowest top topic probability), as the dashboard's labelling queue hands them out."""
    from bert_core import DEFAULT_LABELS

    out = work / f"labels_{n}_{selection}.csv"
    predictor = None
    if selection == "uncertain":
        from bert_core import Predictor

        predictor = Predictor.load(work / "champion", precision="auto")
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "task", "label"])
        for task in ("sentiment", "topic"):
            names = DEFAULT_LABELS[task]  # type: ignore[index]
            with (work / f"pool_{task}.csv").open(encoding="utf-8") as pool:
                rows = list(csv.DictReader(pool))
            if predictor is not None:
                predictions = predictor.predict([row["text"] for row in rows])

                certainty = [
                    p.topic_score if task == "topic" else _margin(p.sentiment_probs) for p in predictions
                ]
                rows = [rows[i] for i in sorted(range(len(rows)), key=certainty.__getitem__)]
            writer.writerows((row["text"], task, names[int(row["label"])]) for row in rows[: n // 2])
    return out


def _run_dir(home: Path, run_id: int) -> Path:
    """Where the run saved its challenger (Settings.registry_models_dir under this FINSENT_HOME)."""
    found = [p for p in home.rglob(f"run-{run_id}") if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def _margin(probs: dict[str, float]) -> float:
    top = sorted(probs.values(), reverse=True)
    return top[0] - top[1]


def run(work: Path, n_labels: int, selection: str, method: str = "full") -> dict:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    home = work / f"home-{stamp}-{method}-{selection}"
    env = {
        **os.environ,
        "FINSENT_HOME": str(home),
        "FINSENT_DATABASE_URL": f"sqlite:///{home}/finsent.db",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("FINSENT_KAFKA_BOOTSTRAP", None)

    def finsent(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "services", *args], cwd=REPO, env=env, text=True, capture_output=True
        )
        sys.stdout.write(result.stdout)
        if result.returncode not in (0, 3):
            sys.stderr.write(result.stderr)
            raise SystemExit(f"finsent {' '.join(args)} failed with {result.returncode}")
        return result

    home.mkdir(parents=True)
    finsent("models", "register", str(work / "champion"), "--champion", "--note", "benchmark champion")
    finsent("labels", "import", str(write_labels(work, n_labels, selection)), "--labeller", "benchmark")
    started, cpu_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    retrain = finsent("retrain", "--now", "--method", method)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)

    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from services.storage import GateDecisionRow, RetrainRunRow

    engine = create_engine(env["FINSENT_DATABASE_URL"])
    with Session(engine) as session:
        run_row = session.scalars(select(RetrainRunRow).order_by(RetrainRunRow.id.desc())).first()
        decision = session.scalars(select(GateDecisionRow).order_by(GateDecisionRow.id.desc())).first()
    assert run_row is not None and decision is not None, retrain.stdout
    comparison = decision.comparison
    summary: dict = {
        "labels_imported": n_labels,
        "selection": selection,
        "method": method,
        "stored_bytes": {
            "model_weights": run_row.details.get("weights_bytes"),
            "model_directory": sum(f.stat().st_size for f in _run_dir(home, run_row.id).iterdir()),
            "adapter_delta": run_row.details.get("adapter_bytes"),
        },
        "status": run_row.status,
        "reason": run_row.reason,
        "wall_seconds_cli": round(wall, 1),
        # CPU seconds of `finsent retrain` (all threads): the cost on a machine shared with other work
        "cpu_seconds_cli": round(cpu, 1),
        "setting_overrides": {k: v for k, v in sorted(os.environ.items()) if k.startswith("FINSENT_RETRAIN")},
        "stages": {k: run_row.details.get(k) for k in ("data_seconds", "train_seconds", "evaluate_seconds")},
        "examples": run_row.details.get("examples"),
        "champion": comparison["champion"],
        "challenger": comparison["challenger"],
        "checks": comparison["checks"],
        "cpu": os.cpu_count(),
        "settings": "defaults (FINSENT_RETRAIN_*: 3 epochs, 10 min budget, lr 5e-5, replay 2x / min 500; "
        "lora: rank 8, alpha 16, adapter lr 5e-4, all encoder-layer Linears)",
    }
    return summary


def table(summary: dict) -> str:
    cpu_s, stored = summary.get("cpu_seconds_cli"), summary.get("stored_bytes")
    lines = [
        f"## Retraining ({summary.get('method', 'full')}) with {summary['labels_imported']} new labels "
        f"({summary['selection']} pool texts; "
        "real MiniLM-L6 model, 2 CPU cores)",
        "",
        f"- outcome: **{summary['status']}** — {summary['reason']}",
        f"- setting overrides: {json.dumps(summary.get('setting_overrides', {}))}",
        *([f"- CPU time of `finsent retrain --now`: {cpu_s} s"] if cpu_s is not None else []),
        f"- wall time of `finsent retrain --now`: {summary['wall_seconds_cli']} s "
        f"(data {summary['stages']['data_seconds']} s, fine-tuning {summary['stages']['train_seconds']} s, "
        f"evaluation of both models on both holdouts {summary['stages']['evaluate_seconds']} s)",
        f"- training rows: {json.dumps(summary['examples'])}",
        *([f"- stored version: {json.dumps(stored)} bytes"] if stored is not None else []),
        "",
        "| holdout | task | n | champion macro-F1 | challenger macro-F1 | change | champion acc "
        "| challenger acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for holdout in ("frozen", "recent"):
        for task, champ in summary["champion"][holdout].items():
            chall = summary["challenger"][holdout].get(task)
            if chall is None:
                continue
            lines.append(
                f"| {holdout} | {task} | {champ['n']} | {champ['macro_f1']:.4f} | {chall['macro_f1']:.4f} | "
                f"{chall['macro_f1'] - champ['macro_f1']:+.4f} | {champ['accuracy']:.4f} "
                f"| {chall['accuracy']:.4f} |"
            )
    lines += [
        "",
        "Gate checks:",
        *[f"- {'pass' if c['passed'] else 'FAIL'}: {c['reason']}" for c in summary["checks"]],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--champion-minutes", type=float, default=10.0)
    r = sub.add_parser("run")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--labels", type=int, default=500)
    r.add_argument(
        "--selection",
        default="uncertain,random",
        help="which pool texts the analyst labels, comma-separated runs: uncertain (least certain "
        "first), random",
    )
    r.add_argument(
        "--method",
        choices=("full", "lora"),
        default=None,
        help="retraining method (FINSENT_RETRAIN_METHOD); given, the results are the entry 'method <method>'",
    )
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.work, args.champion_minutes)
        return
    selections = args.selection.split(",")
    if unknown := set(selections) - {"uncertain", "random"}:
        parser.error(f"unknown --selection {', '.join(sorted(unknown))}: use uncertain and/or random")
    info = machine()
    method = args.method or "full"
    entry = f"method {args.method}" if args.method else "selection"
    runs = {selection: run(args.work, args.labels, selection, method) for selection in selections}
    entries = write_entry("retrain", entry, {"runs": runs}, info)
    print("\n".join(map(table, runs.values())))
    result_path("retrain", ".md").write_text(markdown(entries))


def markdown(entries: dict[str, dict]) -> str:
    """retrain.md: each entry's runs as tables, under the machine and command that made them."""
    parts = ["# Retraining benchmark (benchmarks/retrain.py)\n"]
    for name, entry in entries.items():
        if "runs" not in entry:  # the step-cost entries: their one figure is in the JSON
            continue
        info = entry["machine"]
        parts.append(f"## Entry: {name}\n\nMeasured on {describe(info)}: `{info.get('command')}`.\n")
        parts.extend(map(table, entry["runs"].values()))
    return "\n".join(parts)


if __name__ == "__main__":
    main()
