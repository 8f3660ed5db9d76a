"""What storing and fetching a model's files through PostgreSQL costs (docs/operations.md,
"Models across hosts"): a weights-sized file of random bytes stored in chunks, then streamed
back, hashed and written, on a throw-away database.

Usage:
    python benchmarks/model_artifacts.py [--mb 94] [--chunk-mb 4]
        [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from services.learning.artifact_store import _stream_file, store_artifact
from services.storage import ModelVersionRow, make_engine, upgrade_database


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=94, help="size of the weights file (MiniLM: ~90 MB)")
    parser.add_argument("--chunk-mb", type=int, default=4)
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"finsent_bench_{uuid.uuid4().hex}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        engine = make_engine(url)
        work = Path(tempfile.mkdtemp())
        (work / "model.safetensors").write_bytes(os.urandom(args.mb * 1024 * 1024))
        (work / "manifest.json").write_text("{}")
        now = datetime.now(UTC)
        started = time.perf_counter()
        with Session(engine) as session, session.begin():
            session.add(
                ModelVersionRow(
                    version="bench",
                    parent=None,
                    created_at=now,
                    data_hash="-",
                    metrics={},
                    sha256="-",
                    manifest_sha256=None,
                    path=str(work),
                    status="candidate",
                    status_changed_at=now,
                    note=None,
                )
            )
            session.flush()
            stored = store_artifact(
                session, "bench", work, ["model.safetensors"], chunk_bytes=args.chunk_mb * 1024 * 1024
            )
        stored_s = time.perf_counter() - started
        started = time.perf_counter()
        with Session(engine) as session, (work / "fetched").open("wb") as out:
            _stream_file(session, "bench", "model.safetensors", out.write)
        fetched_s = time.perf_counter() - started
        engine.dispose()
        shutil.rmtree(work)
        print(f"{stored / 1e6:.0f} MB in {args.chunk_mb} MB chunks: stored (with commit) {stored_s:.2f} s, "
              f"fetched + hashed + written {fetched_s:.2f} s")  # fmt: skip
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
