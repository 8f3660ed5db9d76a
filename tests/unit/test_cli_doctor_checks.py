"""The pure judgements of `finsent doctor` and the CPU flag reading they use."""

from __future__ import annotations

from pathlib import Path

from bert_core.inference.cpu import cpu_features
from services.cli.doctor import format_check
from services.cli.doctor_checks import judge_cpu, judge_disk, judge_revision, judge_topics

SAPPHIRE = "flags : fpu sse avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile"


def test_cpu_features_from_flags() -> None:
    assert cpu_features(SAPPHIRE) == {"avx2": True, "avx512": True, "vnni": True, "bf16": True, "amx": True}
    assert cpu_features("flags : fpu sse avx avx2 avx_vnni") == {
        "avx2": True,
        "avx512": False,
        "vnni": True,
        "bf16": False,
        "amx": False,
    }
    assert not any(cpu_features("").values())


def test_judge_cpu() -> None:
    assert judge_cpu(cpu_features(SAPPHIRE)).ok
    old = judge_cpu(cpu_features("flags : fpu sse avx"))
    assert not old.ok and "AVX2" in old.fix and old.detail.startswith("has none; lacks AVX2")
    no_bf16 = judge_cpu(cpu_features("flags : avx2"))
    assert no_bf16.ok and "fp32 serving" in no_bf16.detail


def test_judge_disk() -> None:
    assert judge_disk(Path("/data"), 3 * 1024**3).ok
    low = judge_disk(Path("/data"), 512 * 1024**2)
    assert not low.ok and "0.5 GiB free at /data" in low.detail and "FINSENT_HOME" in low.fix


def test_judge_revision() -> None:
    assert judge_revision("0004", "0004", "db").ok
    empty = judge_revision(None, "0004", "db")
    assert not empty.ok and "no schema" in empty.detail
    behind = judge_revision("0002", "0004", "db")
    assert not behind.ok and "at revision 0002, the newest is 0004" in behind.detail


def test_judge_topics_and_format() -> None:
    assert judge_topics("k:9092", {"news.raw": 4, "alerts": 1}).ok
    missing = judge_topics("k:9092", {"news.raw": 4, "alerts": None})
    assert not missing.ok and "alerts" in missing.detail
    assert format_check(missing).splitlines() == [
        "PROBLEM  broker     Kafka at k:9092 is reachable, but topic(s) alerts do not exist",
        "                    fix: run `finsent init` (creates the pipeline's topics)",
    ]
