"""A real PostgreSQL server for the tests: one per test session, on loopback, own data dir and port.

Use the session fixture ``postgres_server`` (tests/conftest.py); it yields a ``PostgresServer``
with two sets of databases, each holding vmail, amavisd and iredapd:

* ``schema="iredmail"``: databases ``vmail``, ``amavisd``, ``iredapd`` loaded from the real
  iRedMail/iRedAPD schemas in ../shared/iredmail/*.pgsql (absent -> tests asking for this set
  are skipped, see ``require_schema``). Note: iRedAPD's PostgreSQL schema has no unique key on
  throttle (account, kind) or throttle_tracking (tid, account);
* ``schema="apd"``: databases ``apd_vmail``, ``apd_amavisd``, ``apd_iredapd`` created only by
  ``apd --init-db`` (apd's own DDL, apd/store/ddl/pgsql/, which adds those unique keys).

Helpers (same names as tests/helpers/mariadb.py):

* ``server.settings(schema="apd", **overrides)`` -> apd ``Settings`` with backend 'pgsql' and every
  ``*_db_*`` setting pointing at that set (users vmail/amavisd/iredapd, password ``PASSWORD``,
  TCP on 127.0.0.1 with scram-sha-256); ``server.apd_settings(...)`` gives a dict for ``apd_factory``.
* ``server.truncate(schema)`` empties every table of the set.
* ``server.execute(sql, params, database=...)`` / ``server.query(...)`` run as the superuser.
* ``server.stop()`` / ``server.start()``; ``server.kill_connections(user)`` (pg_terminate_backend).

When run as root, initdb and the server run as the ``postgres`` user; the data dir lives in
a temp dir owned by that user. The server is a child of pytest and stops if pytest dies.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from tests.helpers.apd_process import free_port
from tests.helpers.child import die_with_parent
from tests.helpers.servers import unavailable
from tests.helpers.shared import shared_schema
from tests.helpers.sql_server import PASSWORD, SCHEMAS, USERS, SchemaSets

SUPERUSER = "postgres"


def pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        unavailable("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin/initdb)")
    return Path(candidates[-1]).parent


class PostgresServer(SchemaSets):
    backend = "pgsql"

    def __init__(self, base: Path):
        self.base = Path(base)
        self.datadir = self.base / "data"
        self.socket_dir = str(self.base)
        self.port = free_port()
        self.bindir = pg_bindir()
        self.schemas: set[str] = set()
        self._tables: dict[str, list[str]] = {}
        self.as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.proc: subprocess.Popen | None = None

    # --- lifecycle

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([*self.as_user, *args], capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stdout[-800:]} {out.stderr[-800:]}")
        return out

    def install(self) -> None:
        if self.as_user:
            shutil.chown(self.base, "postgres", "postgres")
            os.chmod(self.base, 0o700)
        try:
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
        except RuntimeError as exc:
            unavailable(str(exc))

    def start(self, timeout: float = 60.0) -> None:
        """Run the postmaster as our child (as ``postgres`` when root), so it ends with the session."""
        log = open(self.base / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port), "-k", self.socket_dir]
            + ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"]
            + ["-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=log,
            stderr=subprocess.STDOUT,
            # immediate shutdown if pytest dies: no server left behind by a killed test run
            preexec_fn=die_with_parent(signal.SIGQUIT, "postgres" if self.as_user else None),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                unavailable(f"PostgreSQL exited: {self.log_tail()}")
            try:
                self.query("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop("immediate")
                    unavailable(f"PostgreSQL did not start in {timeout}s: {self.log_tail()}")
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        path = self.base / "postgres.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    # --- superuser access

    def _root(self, database: str = "postgres") -> Any:
        import psycopg2

        conn = psycopg2.connect(host=self.socket_dir, port=self.port, user=SUPERUSER, dbname=database)
        conn.autocommit = True
        return conn

    def execute(self, sql: str, params: Sequence[Any] = (), database: str = "postgres") -> int:
        conn = self._root(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params))
                return cur.rowcount
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] = (), database: str = "postgres") -> list[tuple]:
        conn = self._root(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
        finally:
            conn.close()

    def load_file(self, path: Path, database: str, owner: str) -> None:
        """Load a schema file with psql as the database owner, stopping at the first error."""
        out = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.socket_dir,
                "-p",
                str(self.port),
                "-U",
                owner,
                "-d",
                database,
                "-f",
                str(path),
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"loading {path} failed: {out.stderr}")

    # --- databases

    def create_databases(self) -> None:
        for user in USERS:
            self.execute(f"CREATE ROLE {user} LOGIN PASSWORD %s", (PASSWORD,))
        for prefix in SCHEMAS.values():
            for db in USERS:
                self.execute(f"CREATE DATABASE {prefix}{db} OWNER {db}")
        for prefix in SCHEMAS.values():
            for db in USERS:  # iRedMail grants narrower rights; the tests need them all
                for user in USERS:
                    self.execute(f"GRANT ALL ON SCHEMA public TO {user}", database=prefix + db)
                    self.execute(
                        f"ALTER DEFAULT PRIVILEGES FOR ROLE {db} IN SCHEMA public GRANT ALL ON TABLES TO {user}",
                        database=prefix + db,
                    )
                    self.execute(
                        f"ALTER DEFAULT PRIVILEGES FOR ROLE {db} IN SCHEMA public GRANT ALL ON SEQUENCES TO {user}",
                        database=prefix + db,
                    )
        schemas = shared_schema()
        if schemas is not None:
            for db, source in (("vmail", "iredmail"), ("amavisd", "amavisd"), ("iredapd", "iredapd")):
                self.load_file(schemas / f"{source}.pgsql", db, owner=db)
            self.schemas.add("iredmail")
        from apd.store.servers import init_server_db

        init_server_db(self.settings("apd"))
        self.schemas.add("apd")

    def tables(self, database: str) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE'",
            database=database,
        )
        return [r[0] for r in rows]

    def truncate(self, schema: str = "apd") -> None:
        """Empty every table of the set (DELETE: much faster than TRUNCATE on small tables)."""
        self.require_schema(schema)
        for db in USERS:
            name = self.db_name(schema, db)
            if name not in self._tables:
                self._tables[name] = self.tables(name)
            if self._tables[name]:
                # replica role: foreign keys are not checked, so the order does not matter
                statements = ["SET session_replication_role = replica"]
                statements += [f"DELETE FROM {t}" for t in self._tables[name]]
                self.execute("; ".join(statements), database=name)

    def kill_connections(self, user: str) -> int:
        rows = self.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
            (user,),
        )
        return len(rows)


def start_postgres() -> PostgresServer:
    """Create, start and fill a PostgreSQL server (the ``postgres_server`` fixture calls this)."""
    base = Path(tempfile.mkdtemp(prefix="apd-postgres-"))
    server = PostgresServer(base)
    try:
        server.install()
        server.start()
        server.create_databases()
    except BaseException:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
        raise
    return server


def remove_postgres(server: PostgresServer) -> None:
    server.stop("immediate")
    shutil.rmtree(server.base, ignore_errors=True)
