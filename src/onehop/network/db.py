"""Opening the network database: URLs, engines, transactions, the schema check.

``--db`` takes a SQLAlchemy URL: ``sqlite:///PATH`` (the default is
``$XDG_DATA_HOME/onehop/network.db``) or ``postgresql+psycopg://user:pass@host/db``.
Every command except ``init`` first checks that the schema is at the head revision.
Library exceptions become :class:`DatabaseError` (unreadable, corrupt, unreachable)
or :class:`Conflict` (a constraint said no) here, at one boundary.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from ..atomicfile import open_directory_warning, private_directory
from ..errors import ConfigError, ConfigProblem
from ..extras import install_hint
from . import migrate
from .errors import Conflict, DatabaseError, SchemaError

DEFAULT_DB_FILENAME = "network.db"
log = logging.getLogger(__name__)


def default_db_path() -> Path:
    """$XDG_DATA_HOME/onehop/network.db (~/.local/share/onehop/network.db)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "onehop" / DEFAULT_DB_FILENAME


def default_url() -> str:
    return f"sqlite:///{default_db_path()}"


def _parse_url(text: str) -> sa.URL:
    try:
        url = make_url(text)
    except exc.ArgumentError:
        raise ConfigError([ConfigProblem("--db", f"not a database URL: {text!r} "
                                         "(sqlite:///PATH or postgresql+psycopg://...)")]) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError([ConfigProblem("--db", f"unsupported database {url.get_backend_name()!r} "
                                         "(sqlite or postgresql)")])
    return url


def _sqlite_file(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _prepare_sqlite_file(path: Path, create: bool) -> None:
    """Refuse a missing file unless creating; when creating (``init``), make it 0600 in a
    0700 directory (it holds the network's private keys and every server's secrets)."""
    if path.exists() and not path.is_file():
        raise DatabaseError(f"{path} is not a file")
    if not create:
        if not path.exists():
            raise SchemaError(f"no database at {path}: run onehop network init")
        return
    # onehop's own directory is made private; another one chosen with --db is only named
    if not private_directory(path.parent, tighten=path.absolute() == default_db_path().absolute()):
        log.warning(open_directory_warning(path.parent, "the network database (private keys)"))
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    elif stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)


def _sqlite_hooks(engine: Engine) -> None:
    """Real transactions in pysqlite (DDL included), foreign keys on, one writer."""
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url_text: str, *, create: bool = False) -> Engine:
    url = _parse_url(url_text)
    if url.get_backend_name() == "sqlite":
        path = _sqlite_file(url)
        if path is not None:
            _prepare_sqlite_file(path, create)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        _sqlite_hooks(engine)
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except (exc.NoSuchModuleError, ImportError) as error:
        hint = install_hint(getattr(error, "name", None) or "psycopg") if isinstance(error, ImportError) else None
        raise ConfigError([ConfigProblem("--db", f"no driver for {url.drivername}: {error}"
                                         + (f" (psycopg {hint})" if hint else ""))]) from None


def describe_error(error: exc.SQLAlchemyError, where: str) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()[0]
    if "file is not a database" in text or "malformed" in text:
        return f"{where} is not a readable onehop database ({text}): the file is corrupt or not SQLite"
    return f"{where}: {text}"


class Database:
    """An engine plus transactions; errors from the driver leave as DatabaseError."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.where = engine.url.render_as_string(hide_password=True)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url_text: str | None = None, *, create: bool = False, check_schema: bool = True) -> Database:
        db = cls(create_engine(url_text or default_url(), create=create))
        if check_schema:
            db.check_schema()
        return db

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        try:
            yield
        except exc.IntegrityError as error:
            raise Conflict(f"the database refused the change: {describe_error(error, 'constraint')}") from None
        except exc.SQLAlchemyError as error:
            raise DatabaseError(describe_error(error, self.where)) from None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed if the block succeeds, rolled back otherwise."""
        with self.translated_errors(), self._sessions.begin() as session:
            yield session

    def revisions(self) -> tuple[str | None, str]:
        with self.translated_errors(), self.engine.connect() as connection:
            return migrate.current_revision(connection), migrate.head_revision()

    def check_schema(self) -> None:
        current, head = self.revisions()
        if current is None:
            raise SchemaError(f"{self.where} has no onehop network schema: run onehop network init")
        if current != head:
            raise SchemaError(f"{self.where} is at schema revision {current}, this onehop needs {head}: "
                              "run onehop network init")

    def upgrade(self, audit_change: Callable[[Session, str | None, str], object] | None = None
                ) -> tuple[str | None, str]:
        """Migrate to head in one transaction, with ``audit_change`` (if the revision
        changed) in that same transaction; returns (revision before, head)."""
        with self.translated_errors(), self.engine.begin() as connection:
            before = migrate.current_revision(connection)
            migrate.upgrade(connection)
            after = migrate.current_revision(connection) or ""
            if audit_change is not None and before != after:
                with Session(bind=connection, join_transaction_mode="rollback_only") as session:
                    audit_change(session, before, after)
                    session.commit()  # joins the migration's transaction, which commits it
            return before, after

    def close(self) -> None:
        self.engine.dispose()
