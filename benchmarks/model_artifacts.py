"""What storing and fetching a model's files through PostgreSQL costs (docs/operations.md,
"Models across hosts"): a weights-sized file of random bytes stored in chunks, then fetched
the way a worker fetches a champion it lacks (`fetch_artifact`: streamed back, hashed,
written, verified against the manifest and the registry's pins), on a throw-away database.

Usage:
    python benchmarks/model_artifacts.py [--mb 94] [--chunk-mb 4]
        [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Prints the two times and writes benchmarks/results/model_artifacts.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from result_file import finish, machine, result_path, write_json
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bert_core import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE
from services.learning.artifact_store import fetch_artifact, store_artifact
from services.storage import ModelVersionRow, make_engine, upgrade_database

VERSION = "bench"


def fake_model_dir(work: Path, weights_mb: int) -> tuple[list[str], str, str]:
    """A model directory the registry accepts: random weights of the given size, small config
    files, and a manifest listing their hashes; returns the files, the weights' and the
    manifest's sha256."""
    (work / WEIGHTS_FILE).write_bytes(os.urandom(weights_mb * 1024 * 1024))
    (work / CONFIG_FILE).write_text("{}")
    (work / "config.json").write_text("{}")
    files = [WEIGHTS_FILE, CONFIG_FILE, "config.json"]
    hashes = {name: hashlib.sha256((work / name).read_bytes()).hexdigest() for name in files}
    manifest = {"version": VERSION, "created": "-", "data_hash": "-", "parent": None, "files": hashes}
    (work / MANIFEST_FILE).write_text(json.dumps(manifest))
    return files, hashes[WEIGHTS_FILE], hashlib.sha256((work / MANIFEST_FILE).read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=94, help="size of the weights file (MiniLM: ~90 MB)")
    parser.add_argument("--chunk-mb", type=int, default=4)
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--out", type=Path, default=result_path("model_artifacts"))
    args = parser.parse_args()
    info = machine()
    name = f"finsent_bench_{uuid.uuid4().hex}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        engine = make_engine(url)
        work = Path(tempfile.mkdtemp())
        source = work / "model"
        source.mkdir()
        files, weights_sha, manifest_sha = fake_model_dir(source, args.mb)
        now = datetime.now(UTC)
        row = ModelVersionRow(
            version=VERSION,
            parent=None,
            created_at=now,
            data_hash="-",
            metrics={},
            sha256=weights_sha,
            manifest_sha256=manifest_sha,
            path=str(source),
            status="candidate",
            status_changed_at=now,
            note=None,
        )
        started = time.perf_counter()
        with Session(engine) as session, session.begin():
            session.add(row)
            session.flush()
            stored = store_artifact(session, VERSION, source, files, chunk_bytes=args.chunk_mb * 1024 * 1024)
        stored_s = time.perf_counter() - started
        started = time.perf_counter()
        with Session(engine) as session:
            fetched = session.get(ModelVersionRow, VERSION)
            assert fetched is not None
            fetch_artifact(session, fetched, work / "fetched")
        fetched_s = time.perf_counter() - started
        engine.dispose()
        shutil.rmtree(work)
        print(f"{stored / 1e6:.0f} MB in {args.chunk_mb} MB chunks: stored (with commit) {stored_s:.2f} s, "
              f"fetched + hashed + written + verified {fetched_s:.2f} s")  # fmt: skip
        write_json(
            args.out,
            {
                "benchmark": "model_artifacts",
                "machine": finish(info),
                "settings": {"weights_mb": args.mb, "chunk_mb": args.chunk_mb},
                "stored_bytes": stored,
                "stored_s": round(stored_s, 3),
                "fetched_s": round(fetched_s, 3),
            },
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
