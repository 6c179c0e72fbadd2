"""Where the wardrobe lives and how to open it: SQLite by default, PostgreSQL by URL.

`WARDROBE_DB` holds either a file path (SQLite) or a URL: `sqlite:///path`,
`postgresql://user:password@host/db` (psycopg 3 is the driver). Empty means the
default SQLite file under the user's data directory. Opening migrates the schema
to the newest revision with Alembic, under a lock, so several worker processes or
replicas starting at once do it exactly once.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import platformdirs
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_S = 30
"""How long a SQLite writer waits for another (another worker process) before giving up."""
_MIGRATION_LOCK = 0x77617264  # "ward": the PostgreSQL advisory lock held while migrating
_WRITE = "wardrobe_write"  # execution option: this connection will write (SQLite: BEGIN IMMEDIATE)


class StoreError(RuntimeError):
    """The wardrobe database cannot be opened or used; the message says which and why."""


def as_utc(value: datetime | None) -> datetime | None:
    """A time read from the database as an aware UTC datetime (SQLite keeps no time zone; we store UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def default_database_path() -> Path:
    """<user data dir>/wardrobe/wardrobe.db, e.g. ~/.local/share/wardrobe/wardrobe.db on Linux."""
    return Path(platformdirs.user_data_dir("wardrobe", appauthor=False)) / "wardrobe.db"


def database_url(setting: str | None) -> URL:
    """The SQLAlchemy URL for a WARDROBE_DB value; ValueError naming it if it is not usable."""
    setting = (setting or "").strip()
    if not setting:
        return URL.create("sqlite", database=str(default_database_path()))
    if "://" not in setting:  # a plain path
        return URL.create("sqlite", database=str(Path(setting).expanduser().resolve()))
    try:
        url = make_url(setting)
    except ArgumentError:
        raise ValueError(f"WARDROBE_DB: not a database URL or path: {_hide_password(setting)!r}") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if url.drivername != "sqlite" or not url.database or url.database == ":memory:":
            raise ValueError("WARDROBE_DB: a SQLite URL must name a file, e.g. sqlite:////var/lib/wardrobe.db")
        return url
    raise ValueError(
        f"WARDROBE_DB: unsupported database {backend!r} in {_hide_password(setting)!r}; "
        "use a SQLite file path or a postgresql:// URL"
    )


def describe(url: URL) -> str:
    """The URL for logs and messages, without its password."""
    return url.render_as_string(hide_password=True)


def _hide_password(text: str) -> str:
    with contextlib.suppress(Exception):
        return make_url(text).render_as_string(hide_password=True)
    return text


def create_engine(url: URL) -> Engine:
    """An engine with the settings each backend needs for several writers at once."""
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        # Transactions are ours to begin (below): pysqlite's implicit ones leave DDL and
        # reads outside any transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, nor it them
        # A deleted item's photo is overwritten with zeros, not left readable in free pages
        # (many builds default to this, not all).
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        # A writer takes the write lock up front: a read-then-write transaction that upgrades
        # later can fail with "database is locked" at once, without waiting for busy_timeout.
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, marked so that its transactions take the write lock at BEGIN."""
    return engine.execution_options(**{_WRITE: True})


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The schema revision a database is at (None: no schema yet)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, once, even with several processes starting together."""
    with writer(engine).begin() as connection:  # SQLite: BEGIN IMMEDIATE is the lock
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        command.upgrade(_alembic_config(connection), "head")


def open_engine(url: URL, create: bool = True) -> Engine:
    """Connect, and migrate (create=True) or check (create=False) the schema; StoreError if not possible."""
    if not create and url.get_backend_name() == "sqlite" and not Path(url.database).is_file():
        raise StoreError(f"wardrobe database {url.database} does not exist")
    engine = create_engine(url)
    try:
        if create:
            migrate(engine)
        else:
            revision, head = current_revision(engine), head_revision()
            if revision != head:
                raise StoreError(
                    f"wardrobe database {describe(url)} is at schema revision {revision or 'none'}, "
                    f"this code reads revision {head}; start the service once to migrate it"
                )
    except SQLAlchemyError as exc:
        engine.dispose()
        first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
        raise StoreError(f"wardrobe database {describe(url)}: {first}") from None
    return engine
