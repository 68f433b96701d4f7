"""Prometheus metrics of a real apd (METRICS_LISTEN): every counter after a known mix of requests
over several workers, a killed worker's live series gone while the totals stay, off by default,
a bad address refused, and a hostile scraper that costs the policy answers nothing."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.apd_process import ROOT, ApdProcess, free_port
from tests.helpers.policy_client import PolicyClient, rcpt
from tests.helpers.servers import require_binary, require_module

CONNECTIONS = 10
REJECTED, PASSED, END_OF_MESSAGE = 5, 5, 3  # per connection


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_when(port: int, ready) -> dict[tuple[str, frozenset], float]:
    """A scrape once ``ready(samples)`` holds: the workers write what they counted at most a
    second after answering (apd/metrics/recorder.py)."""
    deadline = time.monotonic() + 5
    while True:
        samples = scrape(port)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


def pids_of(samples, name: str) -> set[str]:
    return {dict(labels)["pid"] for (n, labels), _ in samples.items() if n == name and "pid" in dict(labels)}


@pytest.fixture
def dead_port():
    """A port held bound but not listening: a connection is refused, and no other process on this
    shared machine can start listening there during the test."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def metered(apd_factory):
    port = free_port()
    proc = apd_factory(workers=2, plugins=["reject_null_sender"], METRICS_LISTEN=f"127.0.0.1:{port}")
    proc.metrics_port = port
    proc.wait_for_log("Serving metrics on http://127.0.0.1:")
    return proc


def send_known_mix(proc) -> list[PolicyClient]:
    clients = []
    for _ in range(CONNECTIONS):
        clients.append(proc.client())
        time.sleep(0.02)  # each idle worker takes one new client: they spread over both
    for client in clients:
        for _ in range(REJECTED):
            assert client.ask(**rcpt(sender="", sasl_username="u@example.com")).startswith("REJECT")
        for _ in range(PASSED):
            assert client.ask(**rcpt()) == "DUNNO"
        for _ in range(END_OF_MESSAGE):
            assert client.ask(**rcpt(protocol_state="END-OF-MESSAGE")) == "DUNNO"
    with proc.client() as breach:  # a line over 4 KiB: a protocol breach, the connection dropped
        breach.send_raw(b"x" * 5000)
        with pytest.raises(ConnectionError):
            breach.read_reply()
    return clients


def test_counters_match_what_was_sent_and_a_killed_workers_series_go(metered):
    clients = send_known_mix(metered)
    sent = CONNECTIONS * (REJECTED + PASSED + END_OF_MESSAGE)

    def settled(got) -> bool:  # the workers report their connections once a second
        return total(got, "apd_requests_total") >= sent and total(got, "apd_connections", state="idle") >= CONNECTIONS

    samples = scrape_when(metered.metrics_port, settled)
    assert value(samples, "apd_requests_total", state="RCPT", check="reject_null_sender", action="REJECT") == (
        CONNECTIONS * REJECTED
    )
    assert value(samples, "apd_requests_total", state="RCPT", check="none", action="DUNNO") == CONNECTIONS * PASSED
    assert value(samples, "apd_requests_total", state="END-OF-MESSAGE", check="none", action="DUNNO") == (
        CONNECTIONS * END_OF_MESSAGE
    )
    assert total(samples, "apd_requests_total") == sent  # nothing else was counted
    assert value(samples, "apd_request_duration_seconds_count") == sent
    assert value(samples, "apd_request_duration_seconds_bucket", le="+Inf") == sent
    assert 0 < value(samples, "apd_request_duration_seconds_sum") < sent * 0.5
    assert value(samples, "apd_check_duration_seconds_count", check="reject_null_sender") == CONNECTIONS * (
        REJECTED + PASSED
    )  # a RCPT check: not asked at END-OF-MESSAGE
    assert value(samples, "apd_connection_drops_total", reason="protocol error") == 1
    assert total(samples, "apd_workers") == 2
    workers = pids_of(samples, "apd_connections")
    assert len(workers) == 2, samples  # both workers serve and report
    assert total(samples, "apd_connections", state="open") == CONNECTIONS
    assert total(samples, "apd_connections", state="idle") == CONNECTIONS
    assert total(samples, "apd_store_errors_total") == 0 and total(samples, "apd_worker_restarts_total") == 0

    victim = int(sorted(workers)[0])
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while victim in metered.worker_pids() or len(metered.worker_pids()) < 2:
        assert time.monotonic() < deadline, "no replacement worker"
        time.sleep(0.1)
    after = scrape_when(metered.metrics_port, lambda got: str(victim) not in pids_of(got, "apd_connections"))
    assert str(victim) not in pids_of(after, "apd_connections")  # its live series are gone
    assert value(after, "apd_worker_restarts_total") == 1
    assert total(after, "apd_requests_total") == sent  # what it counted stays in the totals
    assert total(after, "apd_workers") == 2
    for client in clients:
        client.close()


def listening_ports(pid: int) -> set[int]:
    ss = require_binary("ss")
    out = subprocess.run([ss, "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={pid}," in line}


def test_off_by_default(apd_factory, metered):
    proc = apd_factory(plugins=["reject_null_sender"])
    assert "METRICS_LISTEN" not in proc.settings and "Serving metrics" not in proc.log()
    assert listening_ports(proc.proc.pid) == {proc.port}  # the policy port only
    assert listening_ports(metered.proc.pid) == {metered.port, metered.metrics_port}  # what is asked


@pytest.mark.parametrize("listen", ["9177", "localhost:9177", "127.0.0.1:0", "127.0.0.1:99999", "[::1]"])
def test_a_bad_address_stops_start_up_with_the_reason(tmp_path, listen):
    settings = tmp_path / "settings.py"
    settings.write_text(f"METRICS_LISTEN = {listen!r}\nbackend = 'sqlite'\nsqlite_db_path = '{tmp_path}/a.db'\n")
    done = subprocess.run(
        [sys.executable, "-m", "apd", "-c", str(settings), "--check-config"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 78, done
    assert "METRICS_LISTEN" in done.stderr and "Traceback" not in done.stderr


def test_a_hostile_scraper_costs_the_policy_answers_nothing(metered):
    silent = socket.create_connection(("127.0.0.1", metered.metrics_port), timeout=10)  # sends nothing
    slow = socket.create_connection(("127.0.0.1", metered.metrics_port), timeout=10)
    slow.sendall(b"GET /met")
    unread = socket.create_connection(("127.0.0.1", metered.metrics_port), timeout=10)
    unread.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    unread.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")  # and never read
    with metered.client() as client:
        for _ in range(50):
            started = time.monotonic()
            assert client.ask(**rcpt()) == "DUNNO"
            assert time.monotonic() - started < 0.5
    samples = scrape_when(metered.metrics_port, lambda got: total(got, "apd_requests_total") >= 50)
    assert value(samples, "apd_requests_total", state="RCPT", check="none", action="DUNNO") == 50
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{metered.metrics_port}/other", timeout=5)
    assert refused.value.code == 404
    for sock in (silent, slow, unread):
        sock.close()


def test_a_silent_scraper_is_closed_after_its_timeout(metered):
    silent = socket.create_connection(("127.0.0.1", metered.metrics_port), timeout=10)
    started = time.monotonic()
    assert silent.recv(10) == b""  # closed by the master, not by us
    assert 4 < time.monotonic() - started < 8


def test_store_errors_and_fail_safe_answers_by_database(apd_factory, dead_port):
    dead, port = dead_port, free_port()
    proc = apd_factory(
        backend="mysql",
        plugins=["greylisting"],
        SQL_QUERY_TIMEOUT=1,
        STORE_FAILURE_ACTION="451 4.3.0 Temporary failure",
        METRICS_LISTEN=f"127.0.0.1:{port}",
        **{f"{db}_db_port": dead for db in ("vmail", "amavisd", "iredapd")},
        **{f"{db}_db_password": "x" for db in ("vmail", "amavisd", "iredapd")},
    )
    with proc.client() as client:
        for _ in range(3):
            assert client.ask(**rcpt()) == "451 4.3.0 Temporary failure"
    samples = scrape_when(port, lambda got: total(got, "apd_requests_total") >= 3)
    # greylisting asks vmail first (is the recipient's domain local?): that is the database down
    assert value(samples, "apd_failsafe_answers_total", database="vmail") == 3
    assert value(samples, "apd_requests_total", state="RCPT", check="greylisting", action="451") == 3
    assert value(samples, "apd_store_errors_total", database="vmail", kind="unavailable") == 3
    # the check's time counts too when its database failed it
    assert value(samples, "apd_check_duration_seconds_count", check="greylisting") == 3


def metrics_folder(proc) -> Path:
    return Path(re.search(r"workers' files in (\S+)\)", proc.log()).group(1))


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_run_as_user_from_a_venv_it_cannot_read():
    """Root starts apd from site-packages in a private folder (as `make run` from a clone in
    root's home): prometheus_client is imported before the drop, the folder is the account's."""
    nobody = pwd.getpwnam("nobody")
    workdir = Path(tempfile.mkdtemp(prefix="apd-metrics-privs-"))  # reachable by nobody
    os.chmod(workdir, 0o755)
    private = Path(tempfile.mkdtemp(prefix="apd-private-venv-"))  # mode 0700: root's only
    (private / "site").symlink_to(sysconfig.get_paths()["purelib"])
    port = free_port()
    proc = ApdProcess(
        workdir / "apd",
        run_as_user="nobody",
        sqlite_db_path=str(workdir / "apd" / "state" / "apd.sqlite3"),
        plugins=["reject_null_sender"],
        METRICS_LISTEN=f"127.0.0.1:{port}",
    )
    # python -S: no site-packages but the private one (PYTHONPATH), as in a venv of its own
    wrapper = f'exe="$1"; shift; PYTHONPATH={ROOT}:{private}/site exec "$exe" -S "$@"'
    proc.command_prefix = ("sh", "-c", wrapper, "wrapper")
    try:
        proc.start()
        with proc.client() as client:
            for _ in range(4):
                assert client.ask(**rcpt(sender="", sasl_username="u@example.com")).startswith("REJECT")
        samples = scrape_when(port, lambda got: total(got, "apd_requests_total") >= 4)
        assert value(samples, "apd_requests_total", state="RCPT", check="reject_null_sender", action="REJECT") == 4
        folder = metrics_folder(proc)
        assert (folder.stat().st_uid, folder.stat().st_mode & 0o777) == (nobody.pw_uid, 0o700)
        assert {path.stat().st_uid for path in folder.iterdir()} == {nobody.pw_uid}
        assert proc.stop() == 0
        assert not folder.exists()  # removed at the stop
    finally:
        proc.stop()
        shutil.rmtree(private, ignore_errors=True)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def test_a_reload_keeps_the_listener_and_says_a_new_address_needs_a_restart(metered):
    metered.write_settings(METRICS_LISTEN=f"127.0.0.1:{free_port()}")
    metered.signal(signal.SIGHUP)
    metered.wait_for_log("METRICS_LISTEN changed: a restart is needed for that part")
    metered.wait_for_log("reloading settings")
    with metered.client() as client:
        assert client.ask(**rcpt()) == "DUNNO"
    samples = scrape_when(metered.metrics_port, lambda got: total(got, "apd_requests_total") >= 1)
    assert value(samples, "apd_requests_total", state="RCPT", check="none", action="DUNNO") == 1


def test_a_metrics_port_in_use_stops_start_up_naming_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = ApdProcess(tmp_path / "apd", METRICS_LISTEN=f"127.0.0.1:{port}")
        proc.start(wait=False)
        assert proc.proc.wait(30) == 1
        proc.stop()
    assert f"cannot start: [Errno 98] METRICS_LISTEN 127.0.0.1:{port}: Address already in use" in proc.log()
    assert "Traceback" not in proc.log()


def test_an_ldap_outage_is_counted_for_database_ldap(apd_factory, slapd_server, mariadb_server, dead_port):
    require_module("ldap")
    port = free_port()
    values = mariadb_server.apd_settings("apd", backend="ldap")
    values.update(slapd_server.settings(ldap_uri=f"ldap://127.0.0.1:{dead_port}"))
    proc = apd_factory(
        **values,
        plugins=["custom_is_local"],
        CUSTOM_CHECKS_DIR=str(ROOT / "tests" / "data" / "custom_checks"),
        STORE_FAILURE_ACTION="451 4.3.0 Directory unavailable",
        LDAP_TIMEOUT=1.0,
        METRICS_LISTEN=f"127.0.0.1:{port}",
    )
    with proc.client() as client:
        for _ in range(2):
            assert client.ask(**rcpt(recipient="user@example.com")) == "451 4.3.0 Directory unavailable"
    samples = scrape_when(port, lambda got: total(got, "apd_requests_total") >= 2)
    assert value(samples, "apd_failsafe_answers_total", database="ldap") == 2
    assert value(samples, "apd_store_errors_total", database="ldap", kind="unavailable") == 2
    assert total(samples, "apd_store_errors_total") == 2  # MariaDB (amavisd, iredapd) answered
