"""The registry's tables (SQLAlchemy rows) and their in-place migrations.

Table and column names are the on-disk schema shared by every replica and every version:
never rename them. A column added by a newer version gets a migration here, run by
``Registry`` at start-up (``migrate``); a new table is simply created by ``create_all``.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

log = logging.getLogger("oracle_server.registry")


class Base(DeclarativeBase):
    pass


class DeviceRow(Base):
    __tablename__ = "oracle_devices"
    __table_args__ = (UniqueConstraint("space", "name", name="uq_oracle_devices_space_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    contract: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The tenant that registered the device (NULL: no owner, e.g. registered on an open
    # server or before tenants existed). Added to existing databases by ``_migrate_owner``.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)


class MeasurementRow(Base):
    __tablename__ = "oracle_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(
        ForeignKey("oracle_devices.id", ondelete="CASCADE"), index=True, nullable=False
    )
    genes: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # uint8 per gene
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SpaceRow(Base):
    """A search space registered from a definition (``RegisterSpace``): its canonical JSON."""

    __tablename__ = "oracle_spaces"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[str] = mapped_column(Text, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)  # sha256 hex
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RequestRow(Base):
    """One idempotent write: its client request id, what it was and the reply it got."""

    __tablename__ = "oracle_requests"
    __table_args__ = (Index("ix_oracle_requests_created_at", "created_at"),)

    # Who the id belongs to ("" until callers are told apart): ids are unique per scope.
    scope: Mapped[str] = mapped_column(String(128), primary_key=True, default="")
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)  # sha256 hex of body
    response: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


def migrate(engine: Engine) -> None:
    """Create missing tables, then add columns newer versions introduced (idempotent)."""
    Base.metadata.create_all(engine)
    _migrate_owner(engine)


def _migrate_owner(engine: Engine) -> None:
    """Add the nullable ``owner`` column to a database created before tenants existed.

    Idempotent and safe with several replicas starting at once: PostgreSQL uses
    ``ADD COLUMN IF NOT EXISTS``; SQLite (no such clause) checks first and ignores the
    "duplicate column" of a racing process.
    """
    table = DeviceRow.__tablename__
    columns = {c["name"] for c in inspect(engine).get_columns(table)}
    if "owner" in columns:
        return
    if engine.dialect.name == "postgresql":
        statement = f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS owner VARCHAR(64)"
    else:
        statement = f"ALTER TABLE {table} ADD COLUMN owner VARCHAR(64)"
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    except OperationalError:
        if "owner" not in {c["name"] for c in inspect(engine).get_columns(table)}:
            raise
    log.info("registry schema migrated", extra={"added_column": f"{table}.owner"})
