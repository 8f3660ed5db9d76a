"""SQLite engines (services.storage.engine): the writers' engines create the file and its
directory; a reader's (`create=False`) refuses a file that is not there and creates nothing."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from sqlalchemy import text

from services.storage import NoDatabaseError, make_engine, require_database
from services.storage.engine import is_in_memory, sqlite_file


def test_a_writer_creates_the_directory_and_the_file(tmp_path: Path) -> None:
    db = tmp_path / "new" / "finsent.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    assert db.is_file()


def test_a_reader_refuses_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "typo" / "finsent.db"
    for check in (
        lambda: make_engine(f"sqlite:///{db}", create=False),
        lambda: require_database(f"sqlite:///{db}"),
    ):
        with pytest.raises(NoDatabaseError) as caught:
            check()
        assert caught.value.strerror == f"no database at {db} (run `finsent db upgrade` to create it)"
        assert caught.value.errno == errno.ENOENT and caught.value.filename is None
    assert not db.parent.exists()


def test_a_reader_opens_an_existing_file(tmp_path: Path) -> None:
    db = tmp_path / "finsent.db"
    make_engine(f"sqlite:///{db}").connect().close()
    engine = make_engine(f"sqlite:///{db}", create=False)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
    require_database(f"sqlite:///{db}")


@pytest.mark.parametrize(
    ("url", "in_memory", "file"),
    [
        ("sqlite://", True, None),
        ("sqlite:///:memory:", True, None),
        ("sqlite:///file::memory:?uri=true", True, None),
        ("sqlite:///rel/x.db", False, Path("rel/x.db")),
        ("sqlite:////abs/x.db", False, Path("/abs/x.db")),
        ("postgresql://u@h/db", False, None),
    ],
)
def test_which_urls_name_a_file(url: str, in_memory: bool, file: Path | None) -> None:
    assert is_in_memory(url) == in_memory
    assert sqlite_file(url) == file
    if file is None:
        require_database(url)  # nothing to check without a file: no error, no connection
