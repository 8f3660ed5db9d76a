"""The pure judgements of `finsent doctor`, the CPU flag reading they use, and its check of
the files optional settings name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bert_core.inference.cpu import cpu_features
from services.cli.doctor import format_check
from services.cli.doctor_checks import (
    Check,
    check_files,
    judge_cpu,
    judge_disk,
    judge_files,
    judge_revision,
    judge_topics,
    run_checks,
)
from services.settings import get_settings

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


# --------------------------------------------------------------------------- optional files


def test_judge_files() -> None:
    none_set = judge_files({})
    assert (
        none_set.ok
        and "FINSENT_WATCHLIST" in none_set.detail
        and "FINSENT_SMTP_PASSWORD_FILE" in none_set.detail
    )
    readable = judge_files({"FINSENT_WATCHLIST": (Path("/w.csv"), None)})
    assert readable == Check("files", True, "readable: FINSENT_WATCHLIST=/w.csv")
    bad = judge_files(
        {
            "FINSENT_WATCHLIST": (Path("/w.csv"), None),
            "FINSENT_HOLDOUT_TOPIC_DATA": (Path("/t.csv"), "no such file"),
        }
    )
    assert not bad.ok and bad.detail == "FINSENT_HOLDOUT_TOPIC_DATA=/t.csv: no such file"
    assert "unset it" in bad.fix


@pytest.fixture
def clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No FINSENT_* of the caller, no .env; FINSENT_HOME in tmp_path."""
    for name in [k for k in os.environ if k.startswith("FINSENT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_optional_files_are_checked_where_set(
    clean_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchlist = clean_settings / "watchlist.csv"
    watchlist.write_text("Apple,AAPL\n")
    empty_password = clean_settings / "smtp-password"
    empty_password.write_text("\n")
    monkeypatch.setenv("FINSENT_WATCHLIST", str(watchlist))
    monkeypatch.setenv("FINSENT_HOLDOUT_SENTIMENT_DATA", str(clean_settings / "gone.csv"))
    monkeypatch.setenv("FINSENT_HOLDOUT_TOPIC_DATA", str(clean_settings))  # a directory
    monkeypatch.setenv("FINSENT_SMTP_PASSWORD_FILE", str(empty_password))
    check = check_files(get_settings())
    assert not check.ok
    assert check.detail.split("; ") == [
        f"FINSENT_HOLDOUT_SENTIMENT_DATA={clean_settings / 'gone.csv'}: no such file",
        f"FINSENT_HOLDOUT_TOPIC_DATA={clean_settings}: is a directory",
        f"FINSENT_SMTP_PASSWORD_FILE={empty_password}: empty",
    ]
    # ... and `doctor` runs it among its checks (a PROBLEM: exit 1).
    checks = {c.name: c for c in run_checks()}
    assert checks["files"] == check


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_this_user_cannot_read_is_a_problem(
    clean_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = clean_settings / "watchlist.csv"
    locked.write_text("Apple,AAPL\n")
    locked.chmod(0)
    monkeypatch.setenv("FINSENT_WATCHLIST", str(locked))
    check = check_files(get_settings())
    assert not check.ok and check.detail == f"FINSENT_WATCHLIST={locked}: permission denied"


def test_unset_optional_files_are_not_a_problem(
    clean_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_WATCHLIST", "")  # set but empty: unset
    check = check_files(get_settings())
    assert check.ok and check.detail.startswith("none set (FINSENT_WATCHLIST, ")
    readable = clean_settings / "topics.csv"
    readable.write_text("text,label\n")
    monkeypatch.setenv("FINSENT_HOLDOUT_TOPIC_DATA", str(readable))
    get_settings.cache_clear()
    assert check_files(get_settings()) == Check(
        "files", True, f"readable: FINSENT_HOLDOUT_TOPIC_DATA={readable}"
    )
