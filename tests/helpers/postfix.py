"""A throwaway real Postfix for end-to-end tests, its smtpd asking an apd subprocess for every decision.

One instance runs per test session (fixture ``postfix_server`` in tests/e2e/conftest.py). It lives in a temp dir
with its own config, queue and data directories, listens on ``127.0.0.1:<free port>`` and never delivers: every
transport is deferred (``defer_transports``), so an accepted message stays in the queue where a test can see it.
Every domain is accepted as a destination (``relay_domains = static:all``), so Postfix itself rejects nothing a
test sends and every answer comes from apd. smtpd asks the policy service in RCPT and END-OF-MESSAGE::

    smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
    smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:<apd port>, permit_mynetworks,
                                   reject_unauth_destination
    smtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:<apd port>

Usage in a test (apd's own settings are free; Postfix is re-pointed at each apd it starts)::

    def test_something(postfix_server, postfix_apd):
        apd = postfix_apd(plugins=["reject_to_hostname"])       # started and Postfix pointed at it
        result = postfix_server.send("a@example.net", ["user@example.com"])
        assert result.rcpt["user@example.com"][0] == 250
        assert result.queue_id in postfix_server.queue_ids()
        apd.wait_for_log("END-OF-MESSAGE, a@example.net")

A module that wants one apd for all its tests calls ``postfix_server.start_apd(workdir, **settings)`` from a
module-scoped fixture, stops it at teardown, and re-points Postfix at it before each test with an autouse
``postfix_server.use_policy(apd.host, apd.port)`` (a no-op when nothing changed), because another module's apd may
have been used in between (see tests/e2e/test_postfix_e2e.py). With no apd listening, smtpd answers 451 4.3.5.
Re-pointing reloads Postfix and waits for the old smtpd processes to exit (about half a second). Other helpers:

* ``send(sender, recipients, message=None, client_address=None, **xclient)`` -> ``SmtpResult`` with the replies to
  MAIL, each RCPT and DATA, and the queue id. By default the client connects from 127.0.0.2, since apd (like
  iRedAPD) always trusts 127.0.0.1. ``client_address="203.0.113.5"`` instead connects from 127.0.0.1 and sends
  XCLIENT (ADDR, plus NAME/REVERSE_NAME/HELO/LOGIN... given as keyword arguments), so a test can appear to come
  from any IPv4 or IPv6 address (an IPv6 ADDR is sent as ``IPV6:<address>``) or host name. ``connect(...)``
  gives the open ``smtplib.SMTP`` for finer control.
* ``queue()`` (``postqueue -j`` records), ``queue_ids()``, ``maillog()`` (Postfix's own log), ``postconf(**params)``
  (change main.cf and reload), ``use_policy(host, port)``.
* ``apd_hostname``: the host name the apd started by ``start_apd`` sees (``socket.gethostname()`` when that is a
  valid mail domain, else ``mx.apd-e2e.test`` set in a UTS namespace or, failing that, by a wrapper); it is one of
  Postfix's ``mydestination`` domains.

Postfix's master runs only as root (it switches to ``mail_owner`` itself); elsewhere the fixture calls
``servers.unavailable()``, which skips locally and fails in CI.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apd.address import is_email
from tests.helpers.apd_process import ApdProcess, free_port
from tests.helpers.policy_client import wait_for_port
from tests.helpers.servers import require_binary, unavailable

E2E_HOSTNAME = "mx.apd-e2e.test"
CLIENT_SOURCE = "127.0.0.2"  # not 127.0.0.1, which apd always trusts
XCLIENT_SOURCE = "127.0.0.1"  # the only host allowed to send XCLIENT
SMTP_TIMEOUT = 30.0
QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")

MASTER_CF = """\
{smtp}    inet  n  -  n  -  -  smtpd
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -  0  cleanup
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -  -  trivial-rewrite
bounce    unix  -  -  n  -  0  bounce
defer     unix  -  -  n  -  0  bounce
trace     unix  -  -  n  -  0  bounce
verify    unix  -  -  n  -  1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -  -  proxymap
showq     unix  n  -  n  -  -  showq
error     unix  -  -  n  -  -  error
retry     unix  -  -  n  -  -  error
discard   unix  -  -  n  -  -  discard
hold      unix  -  -  n  -  -  discard
anvil     unix  -  -  n  -  1  anvil
scache    unix  -  -  n  -  1  scache
postlog   unix-dgram  n  -  n  -  1  postlogd
"""


def policy_restrictions(host: str, port: int) -> dict[str, str]:
    service = f"check_policy_service inet:{host}:{port}"
    return {
        "smtpd_recipient_restrictions": f"{service}, permit_mynetworks, reject_unauth_destination",
        "smtpd_end_of_data_restrictions": service,
    }


def main_cf(base: Path, hostnames: list[str], policy: tuple[str, int]) -> dict[str, str]:
    """main.cf of the test instance: private dirs, loopback only, no DNS, no delivery, no error delays."""
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(base / "spool"),
        "data_directory": str(base / "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "maillog_file": str(base / "maillog"),
        "maillog_file_prefixes": str(base),
        "myhostname": "postfix.apd-e2e.test",
        "mydomain": "apd-e2e.test",
        "mydestination": ", ".join(["localhost", *hostnames]),
        "relay_domains": "static:all",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "inet_interfaces": "127.0.0.1",
        # IPv6 address support on (Postfix turns it off itself where the kernel has none): XCLIENT refuses an
        # IPv6 ADDR under "ipv4" ("Bad ADDR syntax"). It listens on 127.0.0.1 only all the same.
        "inet_protocols": "all",
        "mynetworks": "127.0.0.1/32",
        "smtpd_authorized_xclient_hosts": XCLIENT_SOURCE,
        "smtpd_peername_lookup": "no",  # no reverse DNS of the client: tests never reach the system resolver
        "disable_dns_lookups": "yes",
        "smtp_dns_support_level": "disabled",
        "append_dot_mydomain": "no",
        "biff": "no",
        "default_transport": "hold",
        "local_transport": "hold",
        "relay_transport": "hold",
        "virtual_transport": "hold",
        "defer_transports": "hold",  # accepted mail stays queued ("deferred transport")
        "smtpd_error_sleep_time": "0",
        "smtpd_soft_error_limit": "1000",
        "smtpd_hard_error_limit": "1000",
        "smtpd_policy_service_timeout": "10s",
        # Relay control apart from apd's list, so that an OK from apd (amavisd_wblist) cannot skip it; with
        # relay_domains = static:all it rejects nothing (apd --check-postfix reports the harness clean).
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        **policy_restrictions(*policy),
    }


@dataclass
class SmtpResult:
    """Replies of one SMTP transaction: ``(code, text)`` per command; ``data`` is None when no RCPT was accepted."""

    mail: tuple[int, str]
    rcpt: dict[str, tuple[int, str]] = field(default_factory=dict)
    data: tuple[int, str] | None = None

    @property
    def queue_id(self) -> str | None:
        if self.data is None or self.data[0] != 250:
            return None
        match = QUEUED_AS.search(self.data[1])
        return match.group(1) if match else None


def xclient_addr(address: str) -> str:
    """XCLIENT ADDR syntax: Postfix wants an IPv6 address as ``IPV6:2001:db8::1`` ("Bad ADDR syntax" without the
    prefix); the policy service still gets the bare ``client_address=2001:db8::1``."""
    if ":" in address and not address.upper().startswith("IPV6:"):
        return "IPV6:" + address
    return address


def _reply(reply: tuple[int, bytes]) -> tuple[int, str]:
    code, text = reply
    return code, text.decode(errors="replace")


def children(pid: int) -> dict[int, str]:
    """Child processes of ``pid`` as {pid: command name}, read from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name_end = stat.rindex(")")
        ppid = int(stat[name_end + 2 :].split()[1])
        if ppid == pid:
            found[int(entry.name)] = stat[stat.index("(") + 1 : name_end]
    return found


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def hostname_for_apd() -> tuple[str, tuple[str, ...]]:
    """The host name apd will see and the ``ApdProcess.command_prefix`` that gives it that name.

    reject_to_hostname compares the recipient domain with ``socket.gethostname()``, but a short name such as
    ``vm`` never passes the address check that comes first, so such machines give apd a domain-like name.
    """
    real = socket.gethostname().lower()
    if is_email(f"someone@{real}"):
        return real, ()
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--uts", "true"], capture_output=True).returncode == 0:
        return E2E_HOSTNAME, (unshare, "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', E2E_HOSTNAME)
    return E2E_HOSTNAME, (sys.executable, str(Path(__file__).with_name("fake_hostname.py")), E2E_HOSTNAME)


class PostfixServer:
    """One Postfix instance under ``base``; ``start()``/``stop()`` once per session."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.config_dir = self.base / "etc"
        self.queue_dir = self.base / "spool"
        self.log_path = self.base / "maillog"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.policy: tuple[str, int] = ("127.0.0.1", free_port())  # nothing listens until use_policy()
        self.apd_hostname, self.apd_prefix = hostname_for_apd()
        self.master: subprocess.Popen | None = None
        self.postconf_bin = require_binary("postconf")
        self.postfix_bin = require_binary("postfix")
        self.postqueue_bin = require_binary("postqueue")

    # --- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> "PostfixServer":
        if os.geteuid() != 0:
            unavailable("Postfix's master daemon runs only as root (it drops to mail_owner itself)")
        for check, what in (
            (lambda: pwd.getpwnam("postfix"), "user postfix"),
            (lambda: grp.getgrnam("postdrop"), "group postdrop"),
        ):
            try:
                check()
            except KeyError:
                unavailable(f"{what} missing (installed with the Debian package postfix)")
        daemon_dir = Path(self._postconf_default("daemon_directory"))
        if not (daemon_dir / "master").exists():
            unavailable(f"Postfix master not found in {daemon_dir}")
        self._write_config()
        check = self._run([self.postfix_bin, "-c", str(self.config_dir), "check"])
        if check.returncode != 0:
            unavailable(f"postfix check failed: {check.stdout}{check.stderr}{self.maillog()}")
        self.master = subprocess.Popen(
            [str(daemon_dir / "master"), "-c", str(self.config_dir), "-d"],
            stdout=open(self.base / "master.out", "ab"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, MAIL_CONFIG=str(self.config_dir)),
            start_new_session=True,
        )
        try:
            wait_for_port(self.host, self.port, timeout=20)
        except TimeoutError:
            log = self.maillog() + (self.base / "master.out").read_text(errors="replace")
            self.stop(remove=False)
            unavailable(f"Postfix smtpd did not start on {self.host}:{self.port}:\n{log}")
        return self

    def stop(self, remove: bool = True) -> None:
        if self.master is not None and self.master.poll() is None:
            kids = list(children(self.master.pid))
            self.master.send_signal(signal.SIGTERM)
            try:
                self.master.wait(15)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()
            wait_gone(kids, timeout=10)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def _write_config(self) -> None:
        for sub in ("etc", "spool", "data"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)  # Postfix daemons (user postfix) walk these paths
        shutil.chown(self.base / "data", user="postfix")
        hostnames = list(dict.fromkeys([socket.gethostname().lower(), self.apd_hostname]))
        settings = main_cf(self.base, hostnames, self.policy)
        (self.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(smtp=f"{self.host}:{self.port}"))

    # --- configuration ----------------------------------------------------------------------------------------

    def postconf(self, **params: str) -> None:
        """Set main.cf parameters and reload."""
        if params:
            pairs = [f"{name}={value}" for name, value in params.items()]
            self._check(self._run([self.postconf_bin, "-c", str(self.config_dir), "-e", *pairs]))
        self.reload()

    def use_policy(self, host: str, port: int) -> None:
        """Point both restriction lists at the policy server ``host:port`` (a no-op when already there)."""
        if (host, port) == self.policy:
            return
        self.policy = (host, port)
        self.postconf(**policy_restrictions(host, port))

    def reload(self) -> None:
        """SIGHUP the master, then wait until every smtpd started with the old settings has exited.

        smtpd keeps its policy connection open across SMTP sessions; only fresh smtpd processes use the new
        settings, and Postfix retires the old ones asynchronously after the reload.
        """
        assert self.master is not None, "start() first"
        old = [pid for pid, name in children(self.master.pid).items() if name == "smtpd"]
        self.master.send_signal(signal.SIGHUP)
        if not wait_gone(old, timeout=15):
            raise RuntimeError(f"smtpd processes {old} survived a Postfix reload:\n{self.maillog()[-3000:]}")

    # --- apd --------------------------------------------------------------------------------------------------

    def start_apd(self, workdir: Path, **settings: Any) -> ApdProcess:
        """Start apd (seeing ``self.apd_hostname`` as its host name) and point Postfix at it; caller stops it."""
        apd = ApdProcess(workdir, **settings)
        apd.command_prefix = self.apd_prefix
        apd.start()
        self.use_policy(apd.host, apd.port)
        return apd

    # --- SMTP -------------------------------------------------------------------------------------------------

    def connect(
        self, client_address: str | None = None, helo: str = "client.example.net", **xclient: str
    ) -> smtplib.SMTP:
        """An SMTP session after EHLO: from 127.0.0.2, or from ``client_address`` through XCLIENT."""
        source = CLIENT_SOURCE if client_address is None else XCLIENT_SOURCE
        smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT, source_address=(source, 0))
        smtp.ehlo(helo)
        if client_address is not None:
            attrs = {"ADDR": xclient_addr(client_address), "NAME": "[UNAVAILABLE]"}
            attrs.update({k.upper(): v for k, v in xclient.items()})
            code, text = smtp.docmd("XCLIENT", " ".join(f"{k}={v}" for k, v in attrs.items()))
            if code != 220:
                smtp.close()
                raise RuntimeError(f"XCLIENT refused: {code} {text!r}")
            smtp.ehlo(helo)
        return smtp

    def send(
        self,
        sender: str,
        recipients: list[str],
        message: bytes | str | None = None,
        client_address: str | None = None,
        **xclient: str,
    ) -> SmtpResult:
        """One transaction: MAIL, each RCPT, and DATA when a recipient was accepted."""
        if message is None:
            message = f"From: <{sender}>\r\nTo: <{recipients[0]}>\r\nSubject: apd e2e\r\n\r\ntest message\r\n"
        smtp = self.connect(client_address, **xclient)
        try:
            result = SmtpResult(mail=_reply(smtp.mail(sender)))
            if result.mail[0] != 250:
                return result
            for rcpt in recipients:
                result.rcpt[rcpt] = _reply(smtp.rcpt(rcpt))
            if any(code == 250 for code, _ in result.rcpt.values()):
                result.data = _reply(smtp.data(message))
            return result
        finally:
            try:
                smtp.quit()
            except smtplib.SMTPException:
                smtp.close()

    # --- inspection -------------------------------------------------------------------------------------------

    def queue(self) -> list[dict[str, Any]]:
        """The queue as ``postqueue -j`` records (queue_name, queue_id, sender, recipients, ...)."""
        out = self._check(self._run([self.postqueue_bin, "-c", str(self.config_dir), "-j"]))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def queue_ids(self) -> set[str]:
        return {record["queue_id"] for record in self.queue()}

    def maillog(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _postconf_default(self, name: str) -> str:
        return self._check(self._run([self.postconf_bin, "-dh", name])).strip()

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, capture_output=True, text=True, env=dict(os.environ, MAIL_CONFIG=str(self.config_dir))
        )

    @staticmethod
    def _check(done: subprocess.CompletedProcess) -> str:
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(done.args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout


def start_postfix() -> PostfixServer:
    """A started instance in a fresh temp dir (0755: Postfix's daemons must reach it); stop() removes it."""
    server = PostfixServer(Path(tempfile.mkdtemp(prefix="apd-postfix-")))
    try:
        return server.start()
    except BaseException:  # including the skip raised by unavailable(): leave no master or temp dir behind
        server.stop()
        raise
