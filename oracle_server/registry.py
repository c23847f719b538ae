"""Device registry persisted with SQLAlchemy (SQLite by default, PostgreSQL by URL).

Measurements are the source of truth; heads are refit from them on load. Every write is
committed before it returns (the RPC acknowledges only after that). Each device row has a
``revision`` bumped on every change so replicas sharing one database can cheaply poll for
changes (``snapshot_revisions``).

Idempotent writes: a write that carries a client request id (``Receipt``) records it in
``oracle_requests`` -- with a fingerprint of the request and the serialised reply -- in the
*same transaction* as the write itself, so a crash can never separate "applied" from
"recorded". A retry of that id (on any replica sharing the database, or after a restart) is
answered from the record (``recall``) and changes nothing; two identical requests racing
each other cannot both commit (the id is the table's primary key). Records older than
``request_ttl_s`` are ignored and purged (``purge_requests``).

Writes take one ``DeviceWrite`` (``oracle_server.writes``), the same request the ``Oracle``
and the ``DeviceStore`` pass on. The tables and their migrations: ``registry_schema``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, delete, event, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from client_sdk.errors import (
    AlreadyExists,
    DeviceNotFound,
    PermissionDenied,
    SpaceNotFound,
    Unavailable,
)
from oracle_server import metrics
from oracle_server.registry_schema import DeviceRow, MeasurementRow, RequestRow, SpaceRow, migrate
from oracle_server.writes import DeviceWrite, Receipt

log = logging.getLogger(__name__)


#: every operation name the registry reports errors under (``oracle_registry_errors_total``)
OPERATIONS = (
    "create_schema",
    "register",
    "add_measurements",
    "delete",
    "recall",
    "purge_requests",
    "register_space",
    "poll_spaces",
    "load_space",
    "poll",
    "load",
    "load_all",
)

#: Request ids are kept this long by default (``--request-id-ttl-s``).
DEFAULT_REQUEST_TTL_S = 24 * 3600.0


@dataclass(frozen=True)
class RecordedRequest:
    """A request id as recorded: the operation, the request fingerprint, the reply."""

    request_id: str
    operation: str
    fingerprint: str
    response: bytes
    created_at: dt.datetime


@dataclass(frozen=True)
class StoredDevice:
    """A registered device as persisted: its measurements and contract."""

    space: str
    name: str
    contract: dict
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime
    genes: np.ndarray  # (k, g) int16
    latency_ms: np.ndarray  # (k,) float64
    owner: str | None = None  # tenant that registered it (None: nobody)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Registry:
    """Durable store of registered devices and their measurements."""

    def __init__(
        self, url: str, echo: bool = False, request_ttl_s: float = DEFAULT_REQUEST_TTL_S
    ) -> None:
        if request_ttl_s <= 0:
            raise ValueError("request_ttl_s must be positive")
        self.url = url
        self.request_ttl_s = float(request_ttl_s)
        kwargs: dict = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5, pool_recycle=300)
            kwargs["connect_args"] = {"connect_timeout": 3}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        for operation in OPERATIONS:  # every series from the start: rate() sees the first
            metrics.REGISTRY_ERRORS.labels(operation)  # error, dashboards have data at 0
        self._create_schema()

    def _create_schema(self, attempts: int = 3) -> None:
        """Create missing tables and columns: a table added by a newer version
        (``oracle_requests``) is created in an existing database here, its other tables
        untouched. Replicas starting together may race on the DDL (or find the database
        briefly away): retried."""
        for attempt in range(attempts):
            try:
                with self._guard("create_schema"):
                    migrate(self.engine)
                return
            except (AlreadyExists, Unavailable):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (AlreadyExists, DeviceNotFound, PermissionDenied):
            raise
        except IntegrityError as exc:
            raise AlreadyExists(f"conflicting write during {operation}") from exc
        except OperationalError as exc:
            metrics.REGISTRY_ERRORS.labels(operation).inc()
            log.warning("registry %s failed: %s", operation, exc.__class__.__name__)
            raise Unavailable(f"device registry unavailable during {operation}; retry") from exc
        except SQLAlchemyError as exc:
            metrics.REGISTRY_ERRORS.labels(operation).inc()
            log.warning("registry %s failed: %s", operation, exc.__class__.__name__)
            raise Unavailable(f"device registry error during {operation}; retry") from exc

    @contextmanager
    def _session(self, operation: str) -> Iterator[Session]:
        with self._guard(operation), self._sessions.begin() as session:
            yield session

    # ------------------------------------------------------------------ writes
    def create(self, write: DeviceWrite) -> StoredDevice:
        """Register ``write``'s device (owned by ``write.owner``) with its measurements."""
        genes, latency_ms = write.measurements()
        now = _now()
        stored = StoredDevice(
            write.space, write.name, write.contract, 1, now, now, genes, latency_ms, write.owner
        )
        try:
            with self._session("register") as s:
                row = DeviceRow(
                    space=write.space,
                    name=write.name,
                    contract=write.contract,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                    owner=write.owner,
                )
                s.add(row)
                s.flush()
                s.add_all(_measurement_rows(row.id, genes, latency_ms, now))
                self._record(s, write.receipt, stored, now)
        except AlreadyExists:
            raise AlreadyExists(f"device '{write.full_name}' already exists") from None
        return stored

    def add_measurements(self, write: DeviceWrite) -> StoredDevice:
        """``write.require_owner``: the device must belong to that tenant (checked on the
        locked row, so a replica's stale view of the owner cannot let a write through)."""
        genes, latency_ms = write.measurements()
        now = _now()
        with self._session("add_measurements") as s:
            row = _locked_row(s, write)
            if row is None:
                raise DeviceNotFound(f"unknown device '{write.full_name}'")
            s.add_all(_measurement_rows(row.id, genes, latency_ms, now))
            s.execute(
                update(DeviceRow)
                .where(DeviceRow.id == row.id)
                .values(revision=DeviceRow.revision + 1, updated_at=now)
            )
            # The state this write produced, read under the row lock: what it answers, and
            # what a retry of its request id replays.
            s.flush()
            s.refresh(row)
            stored = self._stored(s, row)
            self._record(s, write.receipt, stored, now)
        return stored

    def delete(self, write: DeviceWrite) -> bool:
        """Delete ``write``'s device (``require_owner`` as for ``add_measurements``); False
        if there was none."""
        with self._session("delete") as s:
            row = _locked_row(s, write)
            if row is not None:
                s.execute(delete(MeasurementRow).where(MeasurementRow.device_id == row.id))
                s.execute(delete(DeviceRow).where(DeviceRow.id == row.id))
            self._record(s, write.receipt, row is not None, _now())
        return row is not None

    # --------------------------------------------------------- request ids
    def _record(self, s: Session, receipt: Receipt | None, result: Any, now: dt.datetime) -> None:
        """Record ``receipt`` in the write's transaction ``s`` (an expired record of the
        same id is replaced). A live record of the id makes the whole write fail."""
        if receipt is None:
            return
        response = receipt.reply(result)
        s.execute(
            delete(RequestRow).where(
                RequestRow.scope == receipt.scope,
                RequestRow.request_id == receipt.request_id,
                RequestRow.created_at < now - dt.timedelta(seconds=self.request_ttl_s),
            )
        )
        s.add(
            RequestRow(
                scope=receipt.scope,
                request_id=receipt.request_id,
                operation=receipt.operation,
                fingerprint=receipt.fingerprint,
                response=response,
                created_at=now,
            )
        )
        s.flush()

    def recall(self, request_id: str, scope: str = "") -> RecordedRequest | None:
        """The live record of ``request_id`` (None if unknown or older than the TTL)."""
        with self._session("recall") as s:
            row = s.get(RequestRow, (scope, request_id))
            if row is None:
                return None
            created = _utc(row.created_at)
            if created < _now() - dt.timedelta(seconds=self.request_ttl_s):
                return None
            return RecordedRequest(
                row.request_id, row.operation, row.fingerprint, bytes(row.response), created
            )

    def purge_requests(self) -> int:
        """Delete request ids older than the TTL; returns how many."""
        cutoff = _now() - dt.timedelta(seconds=self.request_ttl_s)
        with self._session("purge_requests") as s:
            result = s.execute(delete(RequestRow).where(RequestRow.created_at < cutoff))
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------- reads
    # ------------------------------------------------------------------ spaces
    def create_space(self, name: str, definition: str, owner: str | None = None) -> bool:
        """Record a space definition (canonical JSON). True if recorded now, False if the
        same definition was already there; ``AlreadyExists`` for another definition under
        that name (a changed definition is a new space: spaces are versioned by name)."""
        fingerprint = hashlib.sha256(definition.encode()).hexdigest()
        for _ in range(2):  # a concurrent registration of the same name: compare with it
            with self._session("register_space") as s:
                row = s.get(SpaceRow, name)
                if row is not None:
                    if row.fingerprint == fingerprint:
                        return False
                    raise AlreadyExists(
                        f"space '{name}' is registered with another "
                        f"definition; register the changed one under a new "
                        f"name (e.g. '{name}_v2')"
                    )
            try:
                with self._session("register_space") as s:
                    s.add(
                        SpaceRow(
                            name=name,
                            definition=definition,
                            fingerprint=fingerprint,
                            owner=owner,
                            created_at=_now(),
                        )
                    )
                return True
            except AlreadyExists:
                continue
        raise AlreadyExists(f"space '{name}' was registered concurrently; retry")

    def space_names(self) -> set[str]:
        """Names of every registered space (one small query: replicas poll it)."""
        with self._session("poll_spaces") as s:
            return set(s.scalars(select(SpaceRow.name)))

    def load_space(self, name: str) -> tuple[str, str | None]:
        """(canonical definition JSON, owner) of a registered space."""
        with self._session("load_space") as s:
            row = s.get(SpaceRow, name)
            if row is None:
                raise SpaceNotFound(f"unknown registered space '{name}'")
            return row.definition, row.owner

    def snapshot_revisions(self) -> dict[tuple[str, str], int]:
        """{(space, name): revision} of every registered device (one small query)."""
        with self._session("poll") as s:
            rows = s.execute(select(DeviceRow.space, DeviceRow.name, DeviceRow.revision)).all()
        return {(sp, nm): rev for sp, nm, rev in rows}

    def load(self, space: str, name: str) -> StoredDevice:
        with self._session("load") as s:
            row = s.scalars(
                select(DeviceRow).where(DeviceRow.space == space, DeviceRow.name == name)
            ).first()
            if row is None:
                raise DeviceNotFound(f"unknown device '{space}/{name}'")
            device_id = row.id
        return self._load_one(device_id)

    def load_all(self) -> list[StoredDevice]:
        with self._session("load_all") as s:
            ids = list(s.scalars(select(DeviceRow.id).order_by(DeviceRow.id)))
        out = []
        for i in ids:  # a device another replica deletes meanwhile is simply not loaded
            try:
                out.append(self._load_one(i))
            except DeviceNotFound:
                continue
        return out

    def _load_one(self, device_id: int) -> StoredDevice:
        with self._session("load") as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                raise DeviceNotFound(f"device id {device_id} vanished")
            return self._stored(s, row)

    @staticmethod
    def _stored(s: Session, row: DeviceRow) -> StoredDevice:
        meas = s.execute(
            select(MeasurementRow.genes, MeasurementRow.latency_ms)
            .where(MeasurementRow.device_id == row.id)
            .order_by(MeasurementRow.id)
        ).all()
        genes = np.array([np.frombuffer(g, dtype=np.uint8) for g, _ in meas], dtype=np.int16)
        lat = np.array([v for _, v in meas], dtype=np.float64)
        return StoredDevice(
            row.space,
            row.name,
            dict(row.contract),
            row.revision,
            _utc(row.created_at),
            _utc(row.updated_at),
            genes,
            lat,
            row.owner,
        )


def _measurement_rows(
    device_id: int, genes: np.ndarray, latency_ms: np.ndarray, now: dt.datetime
) -> list[MeasurementRow]:
    g8 = np.ascontiguousarray(genes, dtype=np.uint8)
    return [
        MeasurementRow(
            device_id=device_id,
            genes=g8[i].tobytes(),
            latency_ms=float(latency_ms[i]),
            created_at=now,
        )
        for i in range(g8.shape[0])
    ]


def _locked_row(s: Session, write: DeviceWrite) -> DeviceRow | None:
    """``write``'s device row, locked for the transaction (None if there is none), after
    checking it belongs to ``write.require_owner`` (if set)."""
    row = s.scalars(
        select(DeviceRow)
        .where(DeviceRow.space == write.space, DeviceRow.name == write.name)
        .with_for_update()
    ).first()
    if row is not None and write.require_owner is not None and row.owner != write.require_owner:
        raise PermissionDenied(
            f"tenant '{write.require_owner}' may not change device '{row.space}/{row.name}': "
            f"it belongs to {'another tenant' if row.owner else 'no tenant (admins only)'}"
        )
    return row


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
