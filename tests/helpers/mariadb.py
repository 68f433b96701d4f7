"""A real MariaDB server for the tests: one per test session, on loopback, own data dir and port.

Use the session fixture ``mariadb_server`` (tests/conftest.py); it yields a ``MariaDBServer``
with two sets of databases, each holding vmail, amavisd and iredapd:

* ``schema="iredmail"``: databases ``vmail``, ``amavisd``, ``iredapd`` loaded from the real
  iRedMail/iRedAPD schemas in ../shared/iredmail/*.mysql (absent -> tests asking for this
  set are skipped, see ``require_schema``);
* ``schema="apd"``: databases ``apd_vmail``, ``apd_amavisd``, ``apd_iredapd`` created only by
  ``apd --init-db`` (apd's own DDL, apd/store/ddl/mysql/).

Helpers:

* ``server.settings(schema="apd", **overrides)`` -> an apd ``Settings`` with backend 'mysql'
  and every ``*_db_*`` setting pointing at that set (users vmail/amavisd/iredapd, password
  ``PASSWORD``); pass e.g. ``SQL_QUERY_TIMEOUT=2`` to override. ``server.apd_settings(...)``
  gives the same as a dict for ``apd_factory(**...)``.
* ``server.truncate(schema)`` empties every table of the set (call it at the start of a test).
* ``server.execute(sql, params, database=...)`` / ``server.query(...)`` run as root.
* TLS is on (self-signed certificate) when ``openssl`` is installed: ``iredapd_db_use_ssl=True`` works.
* ``server.stop()`` / ``server.start()`` for outage tests (same port and data afterwards);
  ``server.kill_connections(user)`` kills that user's sessions (KILL <id>).
"""

from __future__ import annotations

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
from tests.helpers.servers import require_binary, unavailable
from tests.helpers.shared import shared_schema
from tests.helpers.sql_server import PASSWORD, SCHEMAS, USERS, SchemaSets


class MariaDBServer(SchemaSets):
    backend = "mysql"

    def __init__(self, base: Path):
        self.base = Path(base)
        self.datadir = self.base / "data"
        self.socket = str(self.base / "mysqld.sock")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.schemas: set[str] = set()
        self._tables: dict[str, list[str]] = {}
        self.mariadbd = require_binary("mariadbd", "mysqld")
        self.client = require_binary("mariadb", "mysql")
        self.install_db = require_binary("mariadb-install-db", "mysql_install_db")

    # --- lifecycle

    def install(self) -> None:
        out = subprocess.run(
            [
                self.install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--user={_user()}",
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            unavailable(f"mariadb-install-db failed: {out.stderr[-500:]}")

    def make_certificate(self) -> list[str]:
        """A throwaway self-signed certificate, so clients can test ``*_db_use_ssl``."""
        cert, key = self.base / "server.crt", self.base / "server.key"
        if not cert.exists():
            out = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=apd-test"]
                + ["-keyout", str(key), "-out", str(cert)],
                capture_output=True,
            )
            if out.returncode != 0:
                return []
        return [f"--ssl-cert={cert}", f"--ssl-key={key}"]

    def start(self, timeout: float = 30.0) -> None:
        tls = self.make_certificate() if shutil.which("openssl") else []
        log = open(self.base / "mariadbd.log", "ab")
        self.proc = subprocess.Popen(
            [
                self.mariadbd,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}",
                f"--user={_user()}",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=500",
                "--skip-log-bin",
                *tls,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGKILL),  # no server left behind by a killed test run
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                unavailable(f"mariadbd exited: {self.log_tail()}")
            if self._ping():
                return
            if time.monotonic() > deadline:
                self.stop()
                unavailable(f"mariadbd did not start in {timeout}s: {self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        path = self.base / "mariadbd.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def _ping(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except Exception:
            return False

    # --- root access

    def _root(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            unix_socket=self.socket, user="root", database=database, autocommit=True, charset="utf8mb4"
        )

    def execute(self, sql: str, params: Sequence[Any] = (), database: str | None = None) -> int:
        conn = self._root(database)
        try:
            with conn.cursor() as cur:
                return cur.execute(sql, tuple(params))
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] = (), database: str | None = None) -> list[tuple]:
        conn = self._root(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
        finally:
            conn.close()

    def load_file(self, path: Path, database: str) -> None:
        """Load a schema file with the mariadb client (it understands DELIMITER and comments)."""
        with open(path, "rb") as source:
            out = subprocess.run(
                [self.client, "--no-defaults", "-uroot", f"--socket={self.socket}", database],
                stdin=source,
                capture_output=True,
            )
        if out.returncode != 0:
            raise RuntimeError(f"loading {path} failed: {out.stderr.decode(errors='replace')}")

    # --- databases

    def create_databases(self) -> None:
        for user in USERS:
            self.execute(f"CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY %s", (PASSWORD,))
            self.execute(f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY %s", (PASSWORD,))
        for prefix in SCHEMAS.values():
            for db in USERS:
                name = prefix + db
                self.execute(f"CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
                for user in USERS:  # iRedMail grants narrower rights; the tests need them all
                    for host in ("127.0.0.1", "localhost"):
                        self.execute(f"GRANT ALL PRIVILEGES ON {name}.* TO '{user}'@'{host}'")
        schemas = shared_schema()
        if schemas is not None:
            for db, source in (("vmail", "iredmail"), ("amavisd", "amavisd"), ("iredapd", "iredapd")):
                self.load_file(schemas / f"{source}.mysql", db)
            self.schemas.add("iredmail")
        from apd.store.servers import init_server_db

        init_server_db(self.settings("apd"))
        self.schemas.add("apd")

    def tables(self, database: str) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (database,),
        )
        return [r[0] for r in rows]

    def truncate(self, schema: str = "apd") -> None:
        """Empty every table of the set (DELETE: much faster than TRUNCATE on small tables)."""
        self.require_schema(schema)
        conn = self._root()
        try:
            with conn.cursor() as cur:
                cur.execute("SET FOREIGN_KEY_CHECKS = 0")
                for db in USERS:
                    name = self.db_name(schema, db)
                    if name not in self._tables:
                        self._tables[name] = self.tables(name)
                    for table in self._tables[name]:
                        cur.execute(f"DELETE FROM {name}.{table}")
        finally:
            conn.close()

    def kill_connections(self, user: str) -> int:
        ids = [r[0] for r in self.query("SELECT id FROM information_schema.processlist WHERE user = %s", (user,))]
        for thread in ids:
            try:
                self.execute(f"KILL {int(thread)}")
            except Exception:  # it may have ended meanwhile
                pass
        return len(ids)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def start_mariadb() -> MariaDBServer:
    """Install, start and fill a MariaDB server (the ``mariadb_server`` fixture calls this)."""
    base = Path(tempfile.mkdtemp(prefix="apd-mariadb-"))
    server = MariaDBServer(base)
    try:
        server.install()
        server.start()
        server.create_databases()
    except BaseException:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return server


def remove_mariadb(server: MariaDBServer) -> None:
    server.stop()
    shutil.rmtree(server.base, ignore_errors=True)
