"""The soft-targets file (bert_core.soft_targets): keys by text, float16 rows, a manifest,
matching a run's data, and refusing anything that is not plain arrays (no pickle)."""

from __future__ import annotations

import dataclasses
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bert_core import DEFAULT_LABELS, DataError, LabelledData, load_soft_targets, save_soft_targets
from bert_core.soft_targets import (
    RunData,
    SoftTargets,
    SoftTargetsManifest,
    average_soft_targets,
    build_soft_targets,
    mismatch,
    row_indices,
    teacher_targets_from,
    text_key,
)

LABELS = {"sentiment": list(DEFAULT_LABELS["sentiment"]), "topic": list(DEFAULT_LABELS["topic"])}
TEXTS = ["fed holds rates", "acme shares surge", "oil prices rise", "acme shares surge"]  # one twice


def _manifest(**changes: object) -> SoftTargetsManifest:
    base = SoftTargetsManifest(
        teacher={"version": "v-teacher", "manifest_sha256": "ab" * 32},
        encoder="tiny",
        labels=LABELS,
        data={
            "sentiment": {"file": "s.csv", "sha256": "1" * 64, "rows": 3},
            "topic": {"file": "t.csv", "sha256": "2" * 64, "rows": 3},
        },
        split={"seed": 42, "dev_fraction": 0.1},
        train_hash="f" * 64,
        rows=0,
        command="finsent teacher-targets --teacher T --out F.npz",
        created="2026-12-06T00:00:00Z",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _probs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {h: rng.dirichlet(np.ones(len(names)), size=n).astype(np.float32) for h, names in LABELS.items()}


def _targets() -> tuple[SoftTargets, dict[str, np.ndarray]]:
    probs = _probs(len(TEXTS))
    return build_soft_targets(TEXTS, probs, _manifest()), probs


def _run(**changes: object) -> RunData:
    base = RunData(
        labels=LABELS,
        file_sha256={"sentiment": "1" * 64, "topic": "2" * 64},
        seed=42,
        dev_fraction=0.1,
        train_hash="f" * 64,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_text_key_is_the_first_eight_bytes_of_the_texts_sha256() -> None:
    import hashlib

    digest = hashlib.sha256(b"fed holds rates").digest()
    assert text_key("fed holds rates") == int.from_bytes(digest[:8], "little")
    assert text_key("fed holds rates") != text_key("fed holds rates.")


def test_rows_are_unique_sorted_float16_and_matched_by_text_in_any_order() -> None:
    targets, probs = _targets()
    assert targets.manifest.rows == 3 == len(targets.keys)
    assert np.all(targets.keys[1:] > targets.keys[:-1])
    assert all(p.dtype == np.float16 for p in targets.probs.values())
    shuffled = [TEXTS[2], TEXTS[0], TEXTS[1]]
    pos, missing = row_indices(targets.keys, shuffled)
    assert missing == []
    for text, row in zip(shuffled, pos, strict=True):
        first = TEXTS.index(text)  # a text given twice keeps its first row
        np.testing.assert_allclose(targets.probs["topic"][row], probs["topic"][first], atol=1e-3)


def test_targets_for_a_training_set_are_the_other_head_renormalised_in_the_sets_order() -> None:
    targets, probs = _targets()
    sets = {"sentiment": LabelledData("sentiment", [TEXTS[2], TEXTS[0]], [2, 2])}
    out = teacher_targets_from(targets, sets, ["sentiment", "topic"])
    assert set(out["sentiment"]) == {"topic"}
    topic = out["sentiment"]["topic"]
    assert topic.dtype == np.float32
    np.testing.assert_allclose(topic.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(topic, probs["topic"][[2, 0]], atol=2e-3)
    own = teacher_targets_from(targets, sets, ["sentiment", "topic"], own_task=True)
    assert set(own["sentiment"]) == {"sentiment", "topic"}


def test_a_training_text_without_targets_is_an_error_naming_it() -> None:
    targets, _ = _targets()
    sets = {"topic": LabelledData("topic", [TEXTS[0], "gold rallies"], [1, 10])}
    message = r"F\.npz: no soft targets for 1 of 2 topic training texts .*'gold rallies'"
    with pytest.raises(DataError, match=message):
        teacher_targets_from(targets, sets, ["sentiment", "topic"], source="F.npz")


def test_round_trip_keeps_rows_and_manifest(tmp_path: Path) -> None:
    targets, _ = _targets()
    path = save_soft_targets(tmp_path / "t.npz", targets)
    loaded = load_soft_targets(path)
    assert loaded.manifest == targets.manifest
    np.testing.assert_array_equal(loaded.keys, targets.keys)
    for head in LABELS:
        np.testing.assert_array_equal(loaded.probs[head], targets.probs[head])
    with pytest.raises(DataError, match="exists; pass --overwrite"):
        save_soft_targets(path, targets)
    save_soft_targets(path, targets, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["t.npz"]  # no temporary file left


class _Payload:
    """Unpickling this would write a file: proof that loading never unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "executed"))  # type: ignore[return-value]


def test_a_file_with_pickled_content_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    targets, _ = _targets()
    good = tmp_path / "good.npz"
    save_soft_targets(good, targets)
    with np.load(good) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["keys"] = np.array([_Payload(marker)], dtype=object)  # an object array is pickled
    npz_pickle = tmp_path / "objects.npz"
    np.savez(npz_pickle, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"holds pickled or object data.*refused"):
        load_soft_targets(npz_pickle)
    raw_pickle = tmp_path / "raw.npz"
    raw_pickle.write_bytes(pickle.dumps({"keys": _Payload(marker)}))
    with pytest.raises(DataError, match=r"not a soft-targets file .*refused"):
        load_soft_targets(raw_pickle)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.pop("probs_topic"), "has no probabilities"),
        (lambda a: a.update(probs_topic=a["probs_topic"].astype(np.float32)), "not float16"),
        (lambda a: a.update(extra=np.zeros(1)), "unexpected arrays"),
        (lambda a: a.update(keys=a["keys"][::-1].copy()), "not sorted and unique"),
        (lambda a: a.update(manifest=np.frombuffer(b'{"format": "other"}', np.uint8)), "not a finsent"),
    ],
)
def test_a_damaged_file_is_one_clear_error(tmp_path: Path, edit, message: str) -> None:
    targets, _ = _targets()
    good = save_soft_targets(tmp_path / "good.npz", targets)
    with np.load(good) as npz:
        arrays = {name: npz[name] for name in npz.files}
    edit(arrays)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message) as caught:
        load_soft_targets(bad)
    assert "\n" not in str(caught.value)


def test_a_zip_member_that_is_not_an_array_is_refused(tmp_path: Path) -> None:
    targets, _ = _targets()
    file = save_soft_targets(tmp_path / "t.npz", targets)
    with zipfile.ZipFile(file, "a") as zf:
        zf.writestr("payload.pkl", pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match=r"not arrays \(payload\.pkl\); refused"):
        load_soft_targets(file)


def test_not_a_zip_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "t.npz"
    text.write_text("text,label\n")
    with pytest.raises(DataError, match="not a soft-targets file"):
        load_soft_targets(text)
    with pytest.raises(DataError, match="no such soft-targets file"):
        load_soft_targets(tmp_path / "absent.npz")
    assert not zipfile.is_zipfile(text)


def test_a_matching_run_has_no_mismatch() -> None:
    assert mismatch(_manifest(), _run()) is None
    only_sentiment = _run(labels={"sentiment": LABELS["sentiment"]}, file_sha256={"sentiment": "1" * 64})
    assert mismatch(_manifest(), only_sentiment) is None


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (_run(labels={**LABELS, "sentiment": ["Bullish", "Bearish", "Neutral"]}), "sentiment labels"),
        (_run(labels={**LABELS, "esg": ["E", "S", "G"]}), "no esg probabilities"),
        (_run(file_sha256={"sentiment": "9" * 64, "topic": "2" * 64}), r"another sentiment file \(s\.csv"),
        (_run(file_sha256={"sentiment": "1" * 64, "esg": "3" * 64}), "without a esg file"),
        (_run(seed=7), "split seed 42 and dev fraction 0.1; this run uses 7 and 0.1"),
        (_run(dev_fraction=0.2), "this run uses 42 and 0.2"),
        (_run(train_hash="0" * 64), "training rows differ"),
    ],
)
def test_each_mismatch_is_named(run: RunData, message: str) -> None:
    reason = mismatch(_manifest(), run)
    assert reason is not None
    assert re.search(message, reason), reason


def test_a_manifest_from_another_format_version_says_to_regenerate() -> None:
    text = _manifest().to_json().replace('"format_version": 1', '"format_version": 2')
    with pytest.raises(DataError, match="format version 2; this finsent reads version 1: regenerate"):
        SoftTargetsManifest.from_json(text, source="F.npz")


def _member(seed: int, version: str) -> SoftTargets:
    teacher = {"version": version, "manifest_sha256": "cd" * 32}
    return build_soft_targets(
        TEXTS, _probs(len(TEXTS), seed), _manifest(teacher=teacher, command=f"make {version}")
    )


def test_an_ensemble_is_the_mean_of_its_members_and_names_each_of_them() -> None:
    a, b = _member(1, "v-a"), _member(2, "v-b")
    command = "finsent teacher-targets --targets a --targets b"
    mean = average_soft_targets([a, b], command=command, created="now")
    for head in LABELS:
        expected = (a.probs[head].astype(np.float32) + b.probs[head].astype(np.float32)) / 2
        np.testing.assert_allclose(mean.probs[head].astype(np.float32), expected, atol=1e-3)
        assert mean.probs[head].dtype == np.float16
    np.testing.assert_array_equal(mean.keys, a.keys)
    m = mean.manifest
    assert m.teacher["version"] == "v-a+v-b"
    assert [e["teacher"]["version"] for e in m.teacher["ensemble"]] == ["v-a", "v-b"]
    assert [e["command"] for e in m.teacher["ensemble"]] == ["make v-a", "make v-b"]
    assert (m.command, m.created, m.rows, m.encoder) == (command, "now", 3, "tiny")


def test_an_ensemble_of_one_is_that_member() -> None:
    a = _member(1, "v-a")
    assert average_soft_targets([a], command="x", created="now") is a


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (lambda t: dataclasses.replace(t, keys=t.keys[:2]), "they score other texts"),
        (
            lambda t: dataclasses.replace(t, manifest=dataclasses.replace(t.manifest, train_hash="e" * 64)),
            "other training splits",
        ),
        (
            lambda t: dataclasses.replace(
                t, manifest=dataclasses.replace(t.manifest, data={"sentiment": {"sha256": "9" * 64}})
            ),
            "other data files",
        ),
        (
            lambda t: dataclasses.replace(
                t, manifest=dataclasses.replace(t.manifest, labels={"sentiment": ["a", "b", "c"]})
            ),
            "label sets differ",
        ),
    ],
)
def test_members_of_other_data_are_not_averaged(other, message: str) -> None:  # type: ignore[no-untyped-def]
    a = _member(1, "v-a")
    with pytest.raises(DataError, match=f"soft-targets file 2 cannot be averaged with file 1: .*{message}"):
        average_soft_targets([a, other(_member(2, "v-b"))], command="x", created="now")
    with pytest.raises(DataError, match="at least one"):
        average_soft_targets([], command="x", created="now")


def test_a_head_can_take_only_some_members() -> None:
    a, b = _member(1, "v-a"), _member(2, "v-b")
    mixed = average_soft_targets([a, b], command="x", created="now", head_members={"sentiment": [2]})
    np.testing.assert_array_equal(mixed.probs["sentiment"], b.probs["sentiment"])
    mean_topic = (a.probs["topic"].astype(np.float32) + b.probs["topic"].astype(np.float32)) / 2
    np.testing.assert_allclose(mixed.probs["topic"].astype(np.float32), mean_topic, atol=1e-3)
    assert mixed.manifest.teacher["head_members"] == {"sentiment": [2]}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"mood": [1]}, "no head 'mood' to choose members for (heads: sentiment, topic)"),
        ({"topic": [3]}, "topic: members are numbered 1 to 2, not [3]"),
        ({"topic": []}, "topic: members are numbered 1 to 2, not []"),
    ],
)
def test_a_wrong_head_or_member_number_is_named(given: dict[str, list[int]], message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        average_soft_targets(
            [_member(1, "v-a"), _member(2, "v-b")], command="x", created="now", head_members=given
        )
