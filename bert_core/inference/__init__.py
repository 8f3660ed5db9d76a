"""Fast batch inference: the `Predictor` that the workers, the CLI and the benchmarks call,
and the passes underneath it.

One module per job, from the caller down:

- `predictor`: `Predictor` (load a model directory, prepare a copy for a precision, score
  texts, `warm_up` before serving), `PendingPredictions`, `resolve_precision`;
- `passes`: how one call is cut into forward passes and run (`predict_proba`, also used by
  evaluation and training), on the caller's thread or side by side on the Predictor's;
- `unpadded`: BERT's forward on real tokens only, packed end to end (the default pass for
  BERT encoders; others take the padded Hugging Face forward);
- `compiled`: the unpadded pass compiled by `torch.compile` (`FINSENT_COMPILE`);
- `linear_layers`: the inference-only `nn.Linear` replacements: int8 (a scale per input row
  and weight channel) and prepacked bf16 (weights laid out once for oneDNN, GELU fused);
- `cpu`: what this CPU and torch build can do (bf16 units, AMX, VNNI, oneDNN's ops), which
  picks the precision and the layers above. Torch-free to import.

Results are `bert_core.prediction.Prediction`s (torch-free, for the services that only read
them). Texts become token ids in `bert_core.batching`, shared with training.

Public API: the names in `__all__` (also exported by `bert_core`). The rest is internal to
the inference stack; benchmarks that measure its parts import them from their modules
(`linear_layers.Int8Linear`, `linear_layers.activation_levels`, `linear_layers.int8_available`).

Imports are lazy (PEP 562), as in `bert_core`: `bert_core.inference.cpu` or
`from bert_core.inference import cpu_features` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bert_core.lazy import lazy_getattr

if TYPE_CHECKING:
    from bert_core.inference.cpu import compiler_available, cpu_features, cpu_has_bf16
    from bert_core.inference.passes import TOKENS_PER_PASS, predict_proba
    from bert_core.inference.predictor import PendingPredictions, Precision, Predictor, resolve_precision

_EXPORTS: dict[str, str] = {
    "PendingPredictions": "bert_core.inference.predictor",
    "Precision": "bert_core.inference.predictor",
    "Predictor": "bert_core.inference.predictor",
    "TOKENS_PER_PASS": "bert_core.inference.passes",
    "compiler_available": "bert_core.inference.cpu",
    "cpu_features": "bert_core.inference.cpu",
    "cpu_has_bf16": "bert_core.inference.cpu",
    "predict_proba": "bert_core.inference.passes",
    "resolve_precision": "bert_core.inference.predictor",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


__all__ = [
    "TOKENS_PER_PASS",
    "PendingPredictions",
    "Precision",
    "Predictor",
    "compiler_available",
    "cpu_features",
    "cpu_has_bf16",
    "predict_proba",
    "resolve_precision",
]
