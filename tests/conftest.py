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
