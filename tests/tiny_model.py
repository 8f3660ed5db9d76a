"""The tests' tiny keyword model, as plain functions: a hand-written vocabulary, keyword-labelled
sentences whose class a 2-layer BERT learns in seconds, the random tiny BERT and the recipe
that fine-tunes it. `tests/conftest.py` builds its session fixtures from these, and
`benchmarks/chaos.py` builds the same model outside pytest: one recipe, so the chaos run's
labels are the tests' labels. Nothing here downloads.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from bert_core import DEFAULT_LABELS, LabelledData, TrainConfig, TrainResult


def _words(text: str) -> list[str]:
    return text.split()


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0-4
PUNCTUATION = _words("$ . , - % : ' & ! ? / ( )")

# Sentiment keywords: a text's class is decided by which of these it contains.
SENTIMENT_KEYWORDS: dict[int, list[str]] = {
    0: _words("plunge plunges misses falls slumps down tumbles drops weak loss"),  # bearish
    1: _words("surge surges beats rises jumps up soars rally gains strong"),  # bullish
    2: _words("announces schedules holds meeting files plans update reviews hosts conference"),  # neutral
}

# Topic keywords, one list per topic id 0-19 (in bert_core.TOPIC_LABELS order).
TOPIC_KEYWORDS: dict[int, list[str]] = {
    0: _words("analyst upgrade downgrade target"),
    1: _words("fed rates powell hike"),
    2: _words("launches product iphone device"),
    3: _words("treasury yields bonds debt"),
    4: _words("dividend payout quarterly yield"),
    5: _words("earnings profit revenue eps"),
    6: _words("oil crude opec barrel"),
    7: _words("bank lender banks credit"),
    8: _words("dollar euro yen currency"),
    9: _words("opinion column podcast interview"),
    10: _words("gold copper metals silver"),
    11: _words("ipo listing debut offering"),
    12: _words("lawsuit regulator court probe"),
    13: _words("acquire merger deal stake"),
    14: _words("inflation gdp jobs economy"),
    15: _words("index futures nasdaq dow"),
    16: _words("election congress senate president"),
    17: _words("ceo resigns appoints chairman"),
    18: _words("watchlist ideas picks bullish"),
    19: _words("stock movers moves trades"),
}

COMPANIES = _words(
    "acme globex initech umbrella hooli stark wayne tyrell cyberdyne soylent "
    "apple tesla amazon google microsoft netflix nvidia intel boeing ford"
)
# Words that carry no label: they appear in texts of every class.
FILLER = _words(
    "the a an of in on at for to with after before as by from and or its this that today week "
    "month year report news market markets investors traders company inc corp group new first "
    "second third fourth q1 q2 q3 q4 2024 2025 amid over under again still more less than analysts "
    "expected estimates shares price sales results outlook guidance session trading early late "
    "morning afternoon close open wall street global us china europe japan uk says sees could may "
    "will would is are was were be been has have had not no yes big small high low record percent "
    "points billion million per share"
)
EXTRA_WORDS = _words(
    "aapl tsla amzn nvda stocks rallies sinks soaring crash beat miss rate cut cuts surged plunged "
    "prices output steady cools expectations quarter rise"
)

# Unlabelled corpus for MLM: a few templates, so masked words are predictable from context.
MLM_TEMPLATES = [
    "{company} shares surge after earnings beats estimates",
    "{company} stock plunges as profit misses expectations",
    "fed holds rates steady as inflation cools",
    "oil prices rise as opec cuts output",
    "{company} announces dividend payout for the quarter",
]


def build_vocab() -> list[str]:
    """Special tokens first ([PAD]=0 … [MASK]=4), then punctuation and every word used (278 in all)."""
    words: list[str] = []
    for group in (*SENTIMENT_KEYWORDS.values(), *TOPIC_KEYWORDS.values(), COMPANIES, FILLER, EXTRA_WORDS):
        words.extend(w for w in group if w not in words)
    return SPECIAL_TOKENS + PUNCTUATION + words


VOCAB = build_vocab()


def _sentence(rng: random.Random, keywords: list[str], n_keywords: int) -> str:
    words = [rng.choice(COMPANIES), *rng.sample(keywords, n_keywords)]
    words += rng.choices(FILLER, k=rng.randint(2, 6))
    rng.shuffle(words)
    return " ".join(words)


def make_sentiment_rows(n_per_class: int = 30, seed: int = 0) -> list[tuple[str, int]]:
    """Texts whose sentiment is decided by their keywords (0 bearish, 1 bullish, 2 neutral)."""
    rng = random.Random(seed)
    rows = [
        (_sentence(rng, SENTIMENT_KEYWORDS[label], rng.randint(1, 2)), label)
        for label in (0, 1, 2)
        for _ in range(n_per_class)
    ]
    rng.shuffle(rows)
    return rows


def make_topic_rows(n_per_class: int = 6, seed: int = 1) -> list[tuple[str, int]]:
    """Texts whose topic id (0-19) is decided by their two keywords."""
    rng = random.Random(seed)
    rows = [
        (_sentence(rng, TOPIC_KEYWORDS[label], 2), label)
        for label in sorted(TOPIC_KEYWORDS)
        for _ in range(n_per_class)
    ]
    rng.shuffle(rows)
    return rows


def make_mlm_texts(n: int = 100, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(MLM_TEMPLATES).format(company=rng.choice(COMPANIES)) for _ in range(n)]


def write_csv(path: Path, rows: list[tuple[str, int]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def write_tiny_bert(out: Path) -> Path:
    """A tiny random BERT (hidden 32, 2 layers, 2 heads) with the word-level vocabulary,
    saved as safetensors with its fast tokenizer into `out`; loadable with load_encoder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    out.mkdir(parents=True, exist_ok=True)
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary file as `vocab=`; `vocab_file=` is silently ignored there.
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    assert len(tokenizer) == len(VOCAB), "tokenizer did not pick up the vocabulary file"
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def tiny_train_config(base: Path) -> TrainConfig:
    """The recipe that makes the tiny BERT learn the keyword data (~2 s on one thread)."""
    return TrainConfig(
        base_model=str(base),
        epochs=15,
        batch_size=16,
        learning_rate=3e-3,
        head_learning_rate=3e-3,
        warmup_ratio=0.0,
        freeze_word_embeddings=False,  # random tiny embeddings must learn; pretrained ones stay frozen
        patience=100,
        evals_per_epoch=1,
        dropout=0.0,
        progress=False,
        seed=0,
        precision="fp32",  # the same run on every CPU; bf16 training has its own test
    )


def train_tiny(
    base: Path, sentiment_csv: Path, topic_csv: Path
) -> tuple[TrainResult, dict[str, LabelledData], dict[str, LabelledData], dict[str, list[str]], TrainConfig]:
    """The tiny BERT fine-tuned on both keyword files: (result, train, dev, label names, config)."""
    from bert_core import fine_tune, load_task_files, split_sets

    sets = load_task_files({"sentiment": sentiment_csv, "topic": topic_csv})
    split = split_sets(sets, dev_fraction=0.2, seed=0)
    label_names = {t: list(DEFAULT_LABELS[t]) for t in ("sentiment", "topic")}  # type: ignore[index]
    config = tiny_train_config(base)
    result = fine_tune(split.train, split.dev, label_names, config)
    return result, split.train, split.dev, label_names, config


def save_trained(out: Path, result: TrainResult, train: dict[str, LabelledData]) -> Path:
    """Write a trained model as a verified model directory (what `finsent train` writes)."""
    from bert_core import combined_hash, save_model_dir

    save_model_dir(
        out,
        result.model,
        result.tokenizer,
        result.model_config,
        metrics={"dev": result.dev_reports, "history": result.history},
        data_hash=combined_hash(train),
    )
    return out


# MPNet's special tokens, in its own order (<pad> = 1, the id MPNet's position ids skip).
MPNET_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]


def write_tiny_mpnet(out: Path) -> Path:
    """A tiny random MPNet (hidden 32, 2 layers, 2 heads; relative position buckets, no token
    types) with the tiny vocabulary under MPNet's special tokens and its fast tokenizer, saved
    as safetensors: the shape of all-mpnet-base-v2 (`finsent encoders install mpnet-base`)."""
    import torch
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    out.mkdir(parents=True, exist_ok=True)
    vocab = MPNET_SPECIAL_TOKENS + VOCAB[len(SPECIAL_TOKENS) :]
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = MPNetTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    assert len(tokenizer) == len(vocab), "tokenizer did not pick up the vocabulary file"
    assert tokenizer.pad_token_id == 1
    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
    )
    MPNetModel(config).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out
