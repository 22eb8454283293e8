"""The aggregator's durable state: SQLite for records, files for tensors.

Layout under the state directory::

    crucible.db                                runs, participants, rounds, updates ...
    audit.jsonl                                the audit trail, one JSON object a line
    runs/RUN/global-NNNN.safetensors           global model after round NNNN (0: start)
    runs/RUN/strategy-NNNN.safetensors         strategy state after round NNNN
    runs/RUN/updates/NNNN/PARTICIPANT.safetensors   accepted, not yet aggregated

Every tensor file is written to a temporary name, fsynced and renamed before the
database records it, so after a crash the database never points at a partial file.
Updates of a round are deleted once that round's checkpoint is recorded.

The audit trail (who started, changed or cancelled a run, who joined, who was refused)
is kept twice: in the ``audit`` table, where triggers refuse UPDATE and DELETE, and as
``audit.jsonl``, opened for appending only, for log shippers and people with ``jq``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crucible.telemetry import logger

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    key TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    spec BLOB NOT NULL,
    phase TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    current_round INTEGER NOT NULL DEFAULT 0,
    completed_rounds INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 1,
    stage_started REAL NOT NULL DEFAULT 0,
    scaling TEXT,
    model_path TEXT NOT NULL DEFAULT '',
    model_digest TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL NOT NULL DEFAULT 0,
    finished REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS participants (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    joined INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    last_contact REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS statistics (
    run_id TEXT NOT NULL,
    participant TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, participant)
);
CREATE TABLE IF NOT EXISTS updates (
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    participant TEXT NOT NULL,
    path TEXT NOT NULL,
    samples INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (run_id, round, participant)
);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    participants INTEGER NOT NULL,
    train_loss REAL,
    eval_rmse REAL,
    eval_loss REAL,
    seconds REAL NOT NULL,
    path TEXT NOT NULL,
    digest TEXT NOT NULL,
    update_bytes INTEGER NOT NULL,
    completed REAL NOT NULL,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS evaluations (
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    participant TEXT NOT NULL,
    rows INTEGER NOT NULL,
    sse REAL NOT NULL,
    sae REAL NOT NULL,
    PRIMARY KEY (run_id, round, participant)
);
CREATE TABLE IF NOT EXISTS refusals (
    run_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (run_id, reason)
);
CREATE TABLE IF NOT EXISTS audit (
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    run_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
"""
AUDIT_FILE = "audit.jsonl"


class Store:
    """Thread-safe access to the aggregator's SQLite database and tensor files."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.directory / "crucible.db",
            check_same_thread=False,
            isolation_level=None,
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def execute(self, sql: str, *args: Any) -> None:
        with self.transaction() as db:
            db.execute(sql, args)

    # ------------------------------------------------------------------ paths

    def run_dir(self, run_id: str) -> Path:
        return self.directory / "runs" / run_id

    def global_path(self, run_id: str, round_number: int) -> Path:
        return self.run_dir(run_id) / f"global-{round_number:04d}.safetensors"

    def strategy_path(self, run_id: str, round_number: int) -> Path:
        return self.run_dir(run_id) / f"strategy-{round_number:04d}.safetensors"

    def remove_temporary_files(self) -> list[Path]:
        """Delete files a killed process left half-written (hidden ``.NAME.tmp-*``).

        Called at start, before any writer runs: every file is written to such a
        temporary name and renamed when whole, so these were never recorded.
        """
        leftovers = sorted((self.directory / "runs").glob("**/.*.tmp-*"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def update_path(self, run_id: str, round_number: int, participant: str) -> Path:
        return (
            self.run_dir(run_id)
            / "updates"
            / f"{round_number:04d}"
            / f"{participant}.safetensors"
        )

    def drop_updates(self, run_id: str, round_number: int) -> None:
        """Delete a round's stored updates once its checkpoint is recorded."""
        shutil.rmtree(
            self.run_dir(run_id) / "updates" / f"{round_number:04d}", ignore_errors=True
        )

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.directory).free

    # ------------------------------------------------------------------ audit

    def audit(
        self, *, actor: str, action: str, run_id: str = "", **detail: Any
    ) -> None:
        """Append one record to the audit trail; records are never updated.

        A full or unwritable state directory loses the record (with a warning) rather
        than failing the call that is being recorded.
        """
        record = {
            "time": time.time(),
            "actor": actor,
            "action": action,
            "run_id": run_id,
            "detail": detail,
        }
        line = json.dumps(record, sort_keys=True, default=str)
        try:
            with self._lock:
                self.execute(
                    "INSERT INTO audit (time, actor, action, run_id, detail) "
                    "VALUES (?,?,?,?,?)",
                    record["time"],
                    actor,
                    action,
                    run_id,
                    json.dumps(detail, sort_keys=True, default=str),
                )
                with open(self.directory / AUDIT_FILE, "a", encoding="utf-8") as out:
                    out.write(line + "\n")
        except (sqlite3.Error, OSError) as error:
            logger("aggregator").warning(
                "audit_unwritable", record=line, error=str(error)
            )

    def audit_records(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The audit trail in order, for one run or all."""
        rows = self.query(
            "SELECT * FROM audit WHERE ? IS NULL OR run_id=? ORDER BY rowid",
            run_id,
            run_id,
        )
        return [
            {
                "time": row["time"],
                "actor": row["actor"],
                "action": row["action"],
                "run_id": row["run_id"],
                "detail": json.loads(row["detail"]),
            }
            for row in rows
        ]
