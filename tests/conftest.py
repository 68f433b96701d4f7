import pytest

from tests.helpers.apd_process import ApdProcess


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
