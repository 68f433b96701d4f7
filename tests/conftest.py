import pytest

from tests.helpers.apd_process import ApdProcess
from tests.helpers.backends import SCHEMA_CASES


@pytest.fixture
def apd_factory(tmp_path):
    """Start apd subprocesses; each is stopped at the end of the test."""
    started: list[ApdProcess] = []

    def start(**settings) -> ApdProcess:
        proc = ApdProcess(tmp_path / f"apd{len(started)}", **settings)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def slapd_server(tmp_path_factory):
    """One seeded OpenLDAP slapd for the whole session (API: tests/helpers/slapd.py)."""
    from tests.helpers.slapd import start_seeded

    server = start_seeded(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory):
    """dnsmasq on 127.0.0.1:<port> serving the fixed ``.test`` zone of tests/helpers/dnsmasq.py.

    ``dns_server.nameserver`` ('127.0.0.1:port') goes into DNS_NAMESERVERS; names under
    ``slow.test`` are forwarded to ``dns_server.black_hole``, a socket that never answers.
    """
    from tests.helpers.dnsmasq import Dnsmasq
    from tests.helpers.servers import require_binary, unavailable

    binary = require_binary("dnsmasq")
    server = Dnsmasq(binary, tmp_path_factory.mktemp("dnsmasq"))
    try:
        server.start()
    except RuntimeError as exc:
        unavailable(f"dnsmasq did not start: {exc}")
    yield server
    server.stop()


# --- real SQL servers (issue 3); see tests/helpers/mariadb.py, postgres.py, backends.py


@pytest.fixture(scope="session")
def mariadb_server():
    """One MariaDB for the whole session (tests/helpers/mariadb.py documents its API)."""
    from tests.helpers.mariadb import remove_mariadb, start_mariadb

    server = start_mariadb()
    yield server
    remove_mariadb(server)


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL for the whole session (tests/helpers/postgres.py documents its API)."""
    from tests.helpers.postgres import remove_postgres, start_postgres

    server = start_postgres()
    yield server
    remove_postgres(server)


@pytest.fixture(params=["sqlite", "mysql", "pgsql"])
def sql_backend(request, tmp_path):
    """A Store with empty tables on SQLite, MariaDB and PostgreSQL in turn (tests/helpers/backends.py)."""
    from tests.helpers.backends import fresh_store

    store = fresh_store(request, tmp_path, request.param)
    yield store
    store.close()


@pytest.fixture(params=SCHEMA_CASES, ids=[f"{kind}-{schema}" for kind, schema in SCHEMA_CASES])
def schema_store(request, tmp_path):
    """As ``sql_backend``, also on the real iRedMail schemas of MariaDB and PostgreSQL."""
    from tests.helpers.backends import fresh_store

    store = fresh_store(request, tmp_path, *request.param)
    yield store
    store.close()
