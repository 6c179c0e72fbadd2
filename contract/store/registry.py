"""The model registry: every model a wardrobe has served or been offered, in the wardrobe's database.

A model is its ONNX bytes keyed by SHA-256, with its metadata and where it came
from (shipped, a fine-tune on a wardrobe export, or an upload). Its state is one of

    candidate  published, not (or no longer) served
    champion   the one model every worker of every replica serves (at most one)
    previous   served before; `rollback` brings back the one demoted last
    refused    the canary refused it (its figures are kept)

Promoting makes the champion "previous"; rolling back makes the champion a
"candidate" again (it may be promoted later, through the canary) and the newest
"previous" the champion, so repeated rollbacks walk back through history. Each
change of champion is one transaction; on PostgreSQL it also sends NOTIFY on
channel CHANNEL with the new SHA-256, which the workers LISTEN for (SQLite
workers poll `champion_sha256`). The registry stores and orders; deciding
(contract check, canary) is the caller's (service/promotion.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from contract import metadata as meta
from contract.store import database
from contract.store.database import as_utc
from contract.store.schema import model_workers, models

CHANNEL = "wardrobe_models"
"""PostgreSQL NOTIFY channel: the payload is the new champion's SHA-256."""
CANDIDATE, CHAMPION, PREVIOUS, REFUSED = "candidate", "champion", "previous", "refused"
SHIPPED, FINE_TUNE, UPLOAD = "shipped", "fine-tune", "upload"
_REGISTRY_LOCK = 0x6D6F646C  # "modl": the PostgreSQL advisory lock held while the champion changes
_SUMMARY = [c for c in models.c if c.name != "onnx"]


class RegistryError(ValueError):
    """A registry request that cannot be done (unknown SHA-256, nothing to roll back to); the message says why."""


@dataclass(frozen=True)
class ModelRecord:
    """One registered model, without its bytes."""

    sha256: str
    size: int
    metadata: dict[str, str]
    origin: str
    wardrobe_sha256: str | None
    wardrobe_items: int | None
    published_at: datetime
    published_by: str
    state: str
    canary: dict | None
    decided_by: str | None
    decided_at: datetime | None
    promoted_at: datetime | None
    demoted_at: datetime | None
    note: str | None

    def as_json(self) -> dict:
        """The record as the HTTP API and `wardrobe models list --json` answer it (docs/wardrobe.md)."""
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {
            "sha256": self.sha256, "state": self.state, "origin": self.origin, "size": self.size,
            "architecture": self.metadata.get(meta.ARCHITECTURE),
            "test_accuracy": _float(self.metadata, meta.TEST_ACCURACY),
            "wardrobe_sha256": self.wardrobe_sha256, "wardrobe_items": self.wardrobe_items,
            "published_at": iso(self.published_at), "published_by": self.published_by,
            "promoted_at": iso(self.promoted_at), "demoted_at": iso(self.demoted_at),
            "decided_at": iso(self.decided_at), "decided_by": self.decided_by, "canary": self.canary, "note": self.note,
        }  # fmt: skip


@dataclass(frozen=True)
class Confirmation:
    """A worker's report of the model it serves."""

    worker: str
    replica: str
    model_sha256: str
    confirmed_at: datetime


def _float(metadata: Mapping[str, str], key: str) -> float | None:
    try:
        return float(metadata[key])
    except (KeyError, ValueError):
        return None


def _record(row: sa.Row) -> ModelRecord:
    return ModelRecord(
        sha256=row.sha256, size=row.size, metadata=dict(row.model_metadata), origin=row.origin,
        wardrobe_sha256=row.wardrobe_sha256, wardrobe_items=row.wardrobe_items,
        published_at=as_utc(row.published_at), published_by=row.published_by, state=row.state, canary=row.canary,
        decided_by=row.decided_by, decided_at=as_utc(row.decided_at), promoted_at=as_utc(row.promoted_at),
        demoted_at=as_utc(row.demoted_at), note=row.note,
    )  # fmt: skip


def origin_of(metadata: Mapping[str, str], shipped: bool) -> tuple[str, str | None, int | None]:
    """(origin, wardrobe export SHA-256, its item count) as the model's metadata tells them."""
    if meta.WARDROBE_SHA256 in metadata:
        items = metadata.get(meta.WARDROBE_ITEMS, "")
        return FINE_TUNE, metadata[meta.WARDROBE_SHA256], int(items) if items.isdigit() else None
    return (SHIPPED if shipped else UPLOAD), None, None


class Registry:
    """The models table of one wardrobe database (opened like the Store: contract/store/database.py)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = database.writer(engine)

    @classmethod
    def open(cls, setting: str | None = None, create: bool = True) -> Registry:
        return cls(database.open_engine(database.database_url(setting), create=create))

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- reading -------------------------------------------------------------

    def records(self) -> list[ModelRecord]:
        """Every model, newest published first."""
        query = sa.select(*_SUMMARY).order_by(models.c.published_at.desc(), models.c.sha256)
        with self.engine.connect() as connection:
            return [_record(r) for r in connection.execute(query)]

    def resolve(self, sha: str) -> str:
        """The full SHA-256 for `sha` or a unique prefix of at least 8 hex digits; RegistryError otherwise."""
        sha = sha.strip().lower()
        if len(sha) < 8 or any(c not in "0123456789abcdef" for c in sha):
            raise RegistryError(f"{sha!r} is not a SHA-256 (or a prefix of at least 8 hex digits)")
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(models.c.sha256).where(models.c.sha256.startswith(sha, autoescape=True)).limit(2)
            ).scalars().all()  # fmt: skip
        if not found:
            raise RegistryError(f"no model {sha} in the registry; `wardrobe models list` shows what is there")
        if len(found) > 1:
            raise RegistryError(f"{sha} names more than one model; give more of the SHA-256")
        return found[0]

    def get(self, sha: str) -> ModelRecord:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(*_SUMMARY).where(models.c.sha256 == sha)).first()
        if row is None:
            raise RegistryError(f"no model {sha} in the registry")
        return _record(row)

    def onnx_bytes(self, sha: str) -> bytes:
        with self.engine.connect() as connection:
            data = connection.execute(sa.select(models.c.onnx).where(models.c.sha256 == sha)).scalar()
        if data is None:
            raise RegistryError(f"no model {sha} in the registry")
        return data

    def champion_sha256(self) -> str | None:
        """The model every worker should serve (None: no champion yet). Cheap: what SQLite workers poll."""
        with self.engine.connect() as connection:
            return connection.execute(sa.select(models.c.sha256).where(models.c.state == CHAMPION)).scalar()

    # -- writing -------------------------------------------------------------

    def publish(
        self, sha: str, data: bytes, metadata: Mapping[str, str], by: str, shipped: bool = False,
        now: datetime | None = None,
    ) -> tuple[ModelRecord, bool]:  # fmt: skip
        """Add a model (already checked by the caller) as a candidate; (its record, True if it is new).
        Publishing bytes that are already registered changes nothing."""
        origin, wardrobe_sha, wardrobe_items = origin_of(metadata, shipped)
        row = {
            "sha256": sha, "onnx": data, "size": len(data), "model_metadata": dict(metadata), "origin": origin,
            "wardrobe_sha256": wardrobe_sha, "wardrobe_items": wardrobe_items,
            "published_at": now or datetime.now(UTC), "published_by": by[:128], "state": CANDIDATE,
        }  # fmt: skip
        with self._writer.begin() as connection:
            self._lock(connection)
            exists = connection.execute(sa.select(models.c.sha256).where(models.c.sha256 == sha)).first()
            if exists is None:
                connection.execute(sa.insert(models).values(row))
        return self.get(sha), exists is None

    def crown_if_none(self, sha: str, by: str) -> bool:
        """Make `sha` the champion if there is none (first start); True if it was crowned."""
        with self._writer.begin() as connection:
            self._lock(connection)
            if connection.execute(sa.select(models.c.sha256).where(models.c.state == CHAMPION)).first():
                return False
            self._crown(connection, sha, by, datetime.now(UTC), canary=None, note="first champion")
        return True

    def promote(
        self, sha: str, canary: dict | None, by: str, expected_champion: str | None = None, note: str | None = None
    ) -> ModelRecord:
        """`sha` becomes the champion (its canary figures and `note` kept); the champion it replaces becomes
        previous. With `expected_champion`, RegistryError if the champion is no longer that one (the canary
        compared against it)."""
        now = datetime.now(UTC)
        with self._writer.begin() as connection:
            self._lock(connection)
            old = connection.execute(sa.select(models.c.sha256).where(models.c.state == CHAMPION)).scalar()
            if old == sha:
                raise RegistryError(f"model {sha[:12]} is the champion already")
            if expected_champion is not None and old != expected_champion:
                raise RegistryError("the champion changed while the canary ran; promote again")
            if old is not None:
                connection.execute(
                    sa.update(models).where(models.c.sha256 == old).values(state=PREVIOUS, demoted_at=now)
                )
            self._crown(connection, sha, by, now, canary=canary, note=note[:2000] if note else None)
        return self.get(sha)

    def refuse(self, sha: str, canary: dict | None, reason: str, by: str) -> ModelRecord:
        """Mark `sha` refused (it stays registered with the canary's figures and the reason)."""
        with self._writer.begin() as connection:
            self._lock(connection)
            done = connection.execute(
                sa.update(models).where(models.c.sha256 == sha, models.c.state != CHAMPION).values(
                    state=REFUSED, canary=canary, note=reason[:2000], decided_by=by[:128], decided_at=datetime.now(UTC)
                )
            )  # fmt: skip
            if done.rowcount == 0:
                raise RegistryError(f"no model {sha} to refuse (unknown, or the champion)")
        return self.get(sha)

    def rollback(self, by: str) -> tuple[ModelRecord, ModelRecord]:
        """The newest previous model becomes the champion again, the champion a candidate;
        (new champion, old champion). RegistryError if there is no champion or nothing to go back to."""
        now = datetime.now(UTC)
        with self._writer.begin() as connection:
            self._lock(connection)
            old = connection.execute(sa.select(models.c.sha256).where(models.c.state == CHAMPION)).scalar()
            back = connection.execute(
                sa.select(models.c.sha256).where(models.c.state == PREVIOUS)
                .order_by(models.c.demoted_at.desc()).limit(1)
            ).scalar()  # fmt: skip
            if old is None or back is None:
                raise RegistryError("no previous model to roll back to" if old else "no champion to roll back from")
            connection.execute(
                sa.update(models).where(models.c.sha256 == old).values(
                    state=CANDIDATE, demoted_at=now, decided_by=by[:128], decided_at=now, note=f"rolled back by {by}"
                )
            )  # fmt: skip
            self._crown(connection, back, by, now, canary=None, note="rolled back to", keep_canary=True)
        return self.get(back), self.get(old)

    def _crown(self, connection: sa.Connection, sha: str, by: str, now: datetime, canary: dict | None,
               note: str | None, keep_canary: bool = False) -> None:  # fmt: skip
        values = {"state": CHAMPION, "promoted_at": now, "decided_by": by[:128], "decided_at": now, "note": note}
        if not keep_canary:
            values["canary"] = canary
        if connection.execute(sa.update(models).where(models.c.sha256 == sha).values(values)).rowcount == 0:
            raise RegistryError(f"no model {sha} in the registry")
        if connection.dialect.name == "postgresql":  # delivered when the transaction commits
            connection.execute(sa.select(sa.func.pg_notify(CHANNEL, sha)))

    @staticmethod
    def _lock(connection: sa.Connection) -> None:
        # SQLite: the writer's BEGIN IMMEDIATE already serialises; PostgreSQL: one champion change at a time.
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_REGISTRY_LOCK)))

    # -- which worker serves what ------------------------------------------------

    def confirm(self, worker: str, replica: str, sha: str) -> None:
        """Record that `worker` (of `replica`) now serves `sha`."""
        values = {"replica": replica, "model_sha256": sha, "confirmed_at": datetime.now(UTC)}
        with self._writer.begin() as connection:
            done = connection.execute(sa.update(model_workers).where(model_workers.c.worker == worker).values(values))
            if done.rowcount == 0:
                connection.execute(sa.insert(model_workers).values(worker=worker, **values))

    def forget_worker(self, worker: str) -> None:
        """A worker that stops serving takes its row away (a crashed one leaves a stale row: see `confirmations`)."""
        with self._writer.begin() as connection:
            connection.execute(sa.delete(model_workers).where(model_workers.c.worker == worker))

    def confirmations(self) -> list[Confirmation]:
        """Every worker's last report, newest first."""
        query = sa.select(model_workers).order_by(model_workers.c.confirmed_at.desc())
        with self.engine.connect() as connection:
            return [
                Confirmation(r.worker, r.replica, r.model_sha256, as_utc(r.confirmed_at))
                for r in connection.execute(query)
            ]  # fmt: skip
