"""Fixtures for end-to-end tests through a real Postfix (see tests/helpers/postfix.py for the API)."""

import pytest

from tests.helpers.apd_process import ApdProcess
from tests.helpers.postfix import PostfixServer, start_postfix


@pytest.fixture(scope="session")
def postfix_server() -> PostfixServer:
    """One Postfix for the whole run; its smtpd asks whichever apd was started last through it."""
    server = start_postfix()
    yield server
    server.stop()


@pytest.fixture
def postfix_apd(postfix_server, tmp_path):
    """``postfix_apd(**settings)`` starts apd and points Postfix at it; stopped at the end of the test."""
    started: list[ApdProcess] = []

    def start(**settings) -> ApdProcess:
        apd = postfix_server.start_apd(tmp_path / f"apd{len(started)}", **settings)
        started.append(apd)
        return apd

    yield start
    for apd in started:
        apd.stop()
