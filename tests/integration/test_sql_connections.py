"""Connections to real MariaDB and PostgreSQL servers: timeouts bound a slow or hung server,
a killed connection or a restarted server is recovered on a later call, and ``apd --init-db``
creates only what is missing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apd.errors import StoreUnavailable
from apd.store import open_store
from apd.store.base import BACKOFF_FIRST, Database
from apd.store.servers import init_server_db, make_dialect
from tests.helpers.apd_process import ROOT, free_port, settings_text
from tests.helpers.mysql_drivers import MYSQL_DRIVERS, use_mysql_driver
from tests.helpers.servers import unavailable

pytestmark = pytest.mark.servers

# MariaDB on each driver (mysqlclient, PyMySQL), PostgreSQL on psycopg2
CONNECTIONS = [*(f"mysql-{driver}" for driver in MYSQL_DRIVERS), "pgsql"]
SLEEP = {"mysql": "SELECT SLEEP(10)", "pgsql": "SELECT pg_sleep(10)"}
TIMEOUT = 1.0


@pytest.fixture(params=CONNECTIONS)
def server(request, monkeypatch):
    kind, _, driver = request.param.partition("-")
    if driver:
        use_mysql_driver(monkeypatch, driver)
    return request.getfixturevalue("mariadb_server" if kind == "mysql" else "postgres_server")


@pytest.fixture
def kind(server):
    return "pgsql" if "Postgres" in type(server).__name__ else "mysql"


def after_backoff() -> None:
    time.sleep(BACKOFF_FIRST + 0.1)


def timed(fn):
    started = time.monotonic()
    try:
        fn()
    except StoreUnavailable as exc:
        return time.monotonic() - started, exc
    raise AssertionError("expected StoreUnavailable")


def test_slow_query_is_cut_at_the_timeout(server, kind):
    store = open_store(server.settings(SQL_QUERY_TIMEOUT=TIMEOUT))
    db = store.iredapd
    assert db.query("SELECT 1") == [(1,)]
    elapsed, exc = timed(lambda: db.query(SLEEP[kind]))
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.9, elapsed
    assert "iredapd" in str(exc)
    server.kill_connections("iredapd")  # end the abandoned sleep on the server side
    after_backoff()
    assert db.query("SELECT 2") == [(2,)]
    store.close()


def test_killed_connection_is_replaced_on_the_next_call(server):
    store = open_store(server.settings(SQL_QUERY_TIMEOUT=TIMEOUT))
    db = store.iredapd
    assert db.query("SELECT 1") == [(1,)]
    first = db._conn
    assert server.kill_connections("iredapd") >= 1
    time.sleep(0.2)
    assert db.query("SELECT 2") == [(2,)]  # one silent reconnect, no error
    assert db._conn is not first
    assert db.available
    store.close()


IDLE_LIMIT = {"mysql": "SET SESSION wait_timeout = 1", "pgsql": "SET idle_session_timeout = 1000"}


def test_connection_closed_by_the_server_when_idle_is_replaced(server, kind):
    store = open_store(server.settings(SQL_QUERY_TIMEOUT=TIMEOUT))
    db = store.iredapd
    db.execute(IDLE_LIMIT[kind])
    first = db._conn
    time.sleep(2.0)  # the server drops the idle connection
    assert db.query("SELECT 2") == [(2,)]
    assert db._conn is not first  # it really was replaced
    assert db.available
    store.close()


def test_server_restart_mid_run(server):
    store = open_store(server.settings(SQL_QUERY_TIMEOUT=TIMEOUT))
    db = store.vmail
    db.execute("DELETE FROM domain")
    db.execute("INSERT INTO domain (domain) VALUES (%s)", ("restart.org",))
    assert store.accounts.is_local_domain("restart.org")
    server.stop()
    try:
        elapsed, exc = timed(lambda: store.accounts.is_local_domain("restart.org"))
        assert elapsed < TIMEOUT + 0.9
        assert "vmail" in str(exc)
        elapsed, _ = timed(lambda: store.accounts.is_local_domain("restart.org"))
        assert elapsed < 0.1  # backing off: no wait on a dead server
    finally:
        server.start()
    deadline = time.monotonic() + 15
    while True:  # recovers by itself once the back-off lets a connect through
        try:
            assert store.accounts.is_local_domain("restart.org")
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "no recovery after the restart"
            time.sleep(0.2)
    assert db.available
    db.execute("DELETE FROM domain")
    store.close()


@pytest.mark.parametrize("connection", CONNECTIONS)
def test_blackholed_server_costs_one_timeout(connection, monkeypatch):
    """A listening socket that never answers: the connect (handshake) is bounded."""
    kind, _, driver = connection.partition("-")
    if driver:
        use_mysql_driver(monkeypatch, driver)
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        params = dict(host="127.0.0.1", port=hole.getsockname()[1], user="u", password="p", database="d", use_ssl=False)
        db = Database("iredapd (blackhole)", make_dialect(kind, params, TIMEOUT))
        elapsed, exc = timed(lambda: db.query("SELECT 1"))
        assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.9, elapsed
        assert "blackhole" in str(exc)
        elapsed, _ = timed(lambda: db.query("SELECT 1"))
        assert elapsed < 0.1


@pytest.mark.parametrize("connection", CONNECTIONS)
def test_closed_port_fails_fast(connection, monkeypatch):
    kind, _, driver = connection.partition("-")
    if driver:
        use_mysql_driver(monkeypatch, driver)
    params = dict(host="127.0.0.1", port=free_port(), user="u", password="p", database="d", use_ssl=False)
    db = Database("iredapd (closed)", make_dialect(kind, params, TIMEOUT))
    elapsed, _ = timed(lambda: db.query("SELECT 1"))
    assert elapsed < TIMEOUT * 0.9, elapsed  # refused at once, not waited for


def test_hung_postgres_backend_is_bounded_by_the_client(postgres_server):
    """statement_timeout cannot help when the server process itself stops answering."""
    store = open_store(postgres_server.settings(SQL_QUERY_TIMEOUT=TIMEOUT))
    db = store.iredapd
    (pid,) = db.query_one("SELECT pg_backend_pid()")
    os.kill(pid, signal.SIGSTOP)
    try:
        elapsed, _ = timed(lambda: db.query("SELECT 1"))
        assert TIMEOUT <= elapsed < TIMEOUT + 0.9, elapsed
    finally:
        os.kill(pid, signal.SIGCONT)
    after_backoff()
    assert db.query("SELECT 3") == [(3,)]
    store.close()


def test_identical_databases_share_one_connection(server):
    settings = server.settings(vmail_db_name=server.db_name("apd", "iredapd"), vmail_db_user="iredapd")
    store = open_store(settings.replace(amavisd_db_name=settings.iredapd_db_name, amavisd_db_user="iredapd"))
    assert store.vmail is store.amavisd is store.iredapd
    store.iredapd.query("SELECT 1")
    store.close()


# --- apd --init-db


def schema_snapshot(server, kind: str, database: str) -> list[tuple]:
    if kind == "mysql":
        columns = server.query(
            "SELECT table_name, column_name, column_type, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = %s ORDER BY 1, 2",
            (database,),
        )
        indexes = server.query(
            "SELECT table_name, index_name, non_unique, column_name, seq_in_index FROM information_schema.statistics"
            " WHERE table_schema = %s ORDER BY 1, 2, 5",
            (database,),
        )
    else:
        columns = server.query(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, 2",
            database=database,
        )
        indexes = server.query(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
            database=database,
        )
    return [*columns, *indexes]


def test_init_db_leaves_an_iredmail_database_unchanged(server, kind):
    server.require_schema("iredmail")
    names = [server.db_name("iredmail", db) for db in ("vmail", "amavisd", "iredapd")]
    before = {name: schema_snapshot(server, kind, name) for name in names}
    report = init_server_db(server.settings("iredmail"))
    assert len(report) == 3
    assert all("created" not in line for line in report), report
    assert {name: schema_snapshot(server, kind, name) for name in names} == before


def create_empty_databases(server, kind: str, prefix: str) -> None:
    for db in ("vmail", "amavisd", "iredapd"):
        name = f"{prefix}{db}"
        if kind == "mysql":
            server.execute(f"DROP DATABASE IF EXISTS {name}")
            server.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
            for host in ("127.0.0.1", "localhost"):
                server.execute(f"GRANT ALL PRIVILEGES ON {name}.* TO '{db}'@'{host}'")
        else:
            server.execute(f"DROP DATABASE IF EXISTS {name}")
            server.execute(f"CREATE DATABASE {name} OWNER {db}")


def init_db_cli(tmp_path: Path, settings: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "settings.py"
    path.write_text(settings_text(settings))
    return subprocess.run(
        [sys.executable, "-m", "apd", "-c", str(path), "--init-db", "--log-to", "stderr"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )


def test_init_db_cli_creates_missing_tables_only(server, kind, tmp_path):
    prefix = "initdb_"
    create_empty_databases(server, kind, prefix)
    values = server.apd_settings("apd", **{f"{db}_db_name": f"{prefix}{db}" for db in ("vmail", "amavisd", "iredapd")})
    # an iredapd database with one table already there (and a vmail database of someone else)
    if kind == "mysql":
        server.execute("CREATE TABLE smtp_sessions (id INT PRIMARY KEY, note VARCHAR(10))", database="initdb_iredapd")
    else:
        server.execute("CREATE TABLE smtp_sessions (id INT PRIMARY KEY, note VARCHAR(10))", database="initdb_iredapd")
        server.execute("GRANT ALL ON smtp_sessions TO iredapd", database="initdb_iredapd")
    out = init_db_cli(tmp_path, values)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("initdb_vmail" in line and "created 8 table(s)" in line for line in lines), lines
    assert any("initdb_amavisd" in line and "created 5 table(s)" in line for line in lines), lines
    assert any("initdb_iredapd" in line and "created 10 table(s)" in line and "kept 1" in line for line in lines), lines
    assert "smtp_sessions" not in next(line for line in lines if "initdb_iredapd" in line)
    assert "default domains added" in next(line for line in lines if "initdb_iredapd" in line)
    from apd.store.greylisting_whitelists import DEFAULT_WHITELIST_DOMAINS

    seeded = server.query("SELECT domain FROM greylisting_whitelist_domains", database="initdb_iredapd")
    assert sorted(r[0] for r in seeded) == sorted(DEFAULT_WHITELIST_DOMAINS)
    assert sorted(server.tables("initdb_iredapd")) == sorted(server.tables(server.db_name("apd", "iredapd")))
    # the existing table is untouched
    assert "note" in [c[1] for c in schema_snapshot(server, kind, "initdb_iredapd") if c[0] == "smtp_sessions"]
    again = init_db_cli(tmp_path, values)
    assert again.returncode == 0 and "created" not in again.stdout, again.stdout


def test_init_db_reports_an_unreachable_server(tmp_path):
    out = init_db_cli(
        tmp_path,
        {
            "backend": "mysql",
            "iredapd_db_port": free_port(),
            "vmail_db_port": free_port(),
            "amavisd_db_port": free_port(),
            "SQL_QUERY_TIMEOUT": 1,
        },
    )
    assert out.returncode != 0
    assert "--init-db failed" in out.stderr and "unavailable" in out.stderr


def test_deadlock_victim_statement_is_retried(postgres_server):
    """Outside a transaction, a statement chosen as a deadlock victim runs again."""
    import threading

    import psycopg2

    server = postgres_server
    server.truncate("apd")
    name = server.db_name("apd", "iredapd")
    for account in ("one", "two"):
        server.execute("INSERT INTO throttle (account, period) VALUES (%s, 60)", (account,), database=name)
    other = psycopg2.connect(host=server.socket_dir, port=server.port, user="postgres", dbname=name)
    with other.cursor() as cur:  # another session holds row 'two'
        cur.execute("UPDATE throttle SET priority = 1 WHERE account = 'two'")

    def close_the_cycle() -> None:
        deadline = time.monotonic() + 10
        while not server.query(  # wait until our statement holds 'one' and waits for 'two'
            "SELECT 1 FROM pg_stat_activity WHERE usename = 'iredapd' AND wait_event_type = 'Lock'"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with other.cursor() as cur:
            cur.execute("UPDATE throttle SET priority = 1 WHERE account = 'one'")
        other.commit()

    deadlocks_before = (server.base / "postgres.log").read_text(errors="replace").count("deadlock detected")
    helper = threading.Thread(target=close_the_cycle)
    helper.start()
    store = open_store(server.settings(SQL_QUERY_TIMEOUT=10))
    try:
        changed = store.iredapd.execute(
            "UPDATE throttle SET priority = priority + 10 WHERE id IN (SELECT id FROM throttle ORDER BY account)"
        )
    finally:
        helper.join()
        other.close()
    assert changed == 2
    assert sorted(server.query("SELECT account, priority FROM throttle", database=name)) == [("one", 11), ("two", 11)]
    log = (server.base / "postgres.log").read_text(errors="replace")
    assert log.count("deadlock detected") > deadlocks_before  # the retry really was needed
    store.close()


def test_postgres_works_with_descriptors_above_fd_setsize(postgres_server):
    """A busy worker may hold over 1024 descriptors; the client-side wait must not use select()."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"hard descriptor limit {hard} is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        store = open_store(postgres_server.settings(SQL_QUERY_TIMEOUT=TIMEOUT))
        assert store.iredapd.query("SELECT 7") == [(7,)]
        assert store.iredapd._conn.fileno() > 1024
        store.close()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("driver", MYSQL_DRIVERS)
def test_mysql_use_ssl_connects_with_tls_without_verifying_the_certificate(mariadb_server, driver, monkeypatch):
    use_mysql_driver(monkeypatch, driver)
    if not mariadb_server.query("SHOW VARIABLES LIKE 'have_ssl'")[0][1] == "YES":
        unavailable("the test MariaDB offers no TLS: its certificate was not made (openssl missing or failed)")
    tls = open_store(mariadb_server.settings(iredapd_db_use_ssl=True))
    assert tls.iredapd.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0][1] != ""  # self-signed, still accepted
    tls.close()
    # use_ssl = False is a plain connection, as in iRedAPD, though PyMySQL (and libmariadb >= 3.4) would
    # prefer TLS by themselves
    # (a TLS handshake and encryption cost ~35% more apd CPU per throttle request)
    plain = open_store(mariadb_server.settings(iredapd_db_use_ssl=False))
    assert plain.iredapd.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0][1] == ""
    plain.close()


def test_row_lock_wait_is_bounded(server, kind):
    """Another session holds the row: the statement gives up within the timeout."""
    server.truncate("apd")
    name = server.db_name("apd", "iredapd")
    server.execute("INSERT INTO throttle (account, period) VALUES ('locked', 60)", database=name)
    holder = server._root(name)
    holder.autocommit = False
    if kind == "mysql":
        holder.begin()
    with holder.cursor() as cur:
        cur.execute("UPDATE throttle SET priority = 1 WHERE account = 'locked'")
    store = open_store(server.settings(SQL_QUERY_TIMEOUT=TIMEOUT))
    try:
        elapsed, exc = timed(lambda: store.iredapd.execute("UPDATE throttle SET priority = 2 WHERE account = 'locked'"))
        assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.9, elapsed
    finally:
        holder.rollback()
        holder.close()
        store.close()


def test_init_db_with_the_ldap_backend_creates_amavisd_and_iredapd_in_mysql(mariadb_server):
    create_empty_databases(mariadb_server, "mysql", "ldapinit_")
    names = {f"{db}_db_name": f"ldapinit_{db}" for db in ("amavisd", "iredapd")}
    report = init_server_db(mariadb_server.settings("apd", backend="ldap", **names))
    assert len(report) == 2 and "amavisd" in report[0] and "iredapd" in report[1], report
    assert mariadb_server.tables("ldapinit_vmail") == []
    assert len(mariadb_server.tables("ldapinit_iredapd")) == 11


def test_a_commit_on_a_lost_connection_fails_instead_of_passing_on_a_new_one(server, kind):
    """The connection dies inside a transaction: COMMIT must fail. Retried on a fresh connection
    it 'succeeded' with nothing to commit, and the writes (throttle counters) were silently lost."""
    server.truncate("apd")
    store = open_store(server.settings("apd"))
    db = store.iredapd
    try:
        with pytest.raises(StoreUnavailable):
            with db.transaction():
                db.execute("INSERT INTO throttle (account, period) VALUES ('lost-commit', 60)")
                server.kill_connections("iredapd")
        after_backoff()
        assert db.query("SELECT account FROM throttle WHERE account = 'lost-commit'") == []
    finally:
        store.close()
