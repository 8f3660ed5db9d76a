"""Loading the encoder offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bert_core import ModelConfigError, load_encoder, resolve_base_model


def test_tiny_encoder_loads(tiny_bert_dir: Path) -> None:
    encoder, tokenizer, name = load_encoder(tiny_bert_dir)
    assert name == str(tiny_bert_dir.resolve())
    assert tokenizer.is_fast
    assert encoder.config.hidden_size == 32
    assert encoder.config.num_hidden_layers == 2
    assert tokenizer.pad_token_id == 0
    ids = tokenizer("Stock plunges")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id
    assert ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids  # both words are in the vocabulary, lower-cased


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"no config\.json"):
        resolve_base_model(tmp_path)


def test_unknown_model_name_fails_offline_with_a_clear_error() -> None:
    with pytest.raises(ModelConfigError, match="cannot load base model 'no-such-org/no-such-model'"):
        load_encoder("no-such-org/no-such-model")


def test_unit_tests_cannot_reach_the_network() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RuntimeError, match="network access attempted"):
            sock.connect(("192.0.2.1", 443))  # TEST-NET-1, never routable
    finally:
        sock.close()
