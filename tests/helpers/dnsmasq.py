"""A real DNS server for the tests: dnsmasq on a loopback port serving one fixed zone under ``.test``.

One dnsmasq runs for the whole session (fixture ``dns_server`` in tests/conftest.py). Point apd at
it with ``DNS_NAMESERVERS = [dns_server.nameserver]``. Every name under ``.test`` is answered from
the records below only (``--local=/test/``: unknown names are NXDOMAIN, never forwarded), except
``slow.test`` and its subdomains, which are forwarded to a "black hole": a UDP socket that never
answers, so every lookup there times out. ``dns_server.black_hole`` is that socket's
``ip:port``, for a resolver that sees nothing but silence.

Records (TTL 300 unless noted). Add new ones for new tests; keep each test's names apart.

SPF evaluation (tests/integration/test_spf_dns.py):

    ip4.spf.test        TXT "v=spf1 ip4:192.0.2.44 ip4:192.0.2.128/25 -all"
    ip6.spf.test        TXT "v=spf1 ip6:2001:db8:1::/48 ip6:2001:db8:2::5 -all"
    include.spf.test    TXT "v=spf1 include:_inc.spf.test -all"
    _inc.spf.test       TXT "v=spf1 ip4:192.0.2.0/28"
    redirect.spf.test   TXT "v=spf1 redirect=_red.spf.test"
    _red.spf.test       TXT "v=spf1 ip4:198.51.100.7 ~all"
    a.spf.test          TXT "v=spf1 a -all"                 A 192.0.2.20
    a24.spf.test        TXT "v=spf1 a/24 -all"              A 203.0.113.10
    ahost.spf.test      TXT "v=spf1 a:host.ahost.spf.test/28 -all"
    host.ahost.spf.test A 203.0.113.40
    mx.spf.test         TXT "v=spf1 mx -all"                MX 10 mail.mx.spf.test
    mail.mx.spf.test    A 192.0.2.30, AAAA 2001:db8:30::1
    mx24.spf.test       TXT "v=spf1 mx/24 -all"             MX 10 mail.mx24.spf.test
    mail.mx24.spf.test  A 203.0.113.130
    ptr.spf.test        TXT "v=spf1 ptr ptr:other.test -all"
    quals.spf.test      TXT "v=spf1 -ip4:192.0.2.50 ~ip4:192.0.2.51 ?ip4:192.0.2.52 +ip4:192.0.2.53 ~all"
    multi.spf.test      TXT "google-site-verification=abc", TXT "v=spf1 ip4:192.0.2.54 -all"
    loop.spf.test       TXT "v=spf1 include:_loop.spf.test ip4:192.0.2.60"
    _loop.spf.test      TXT "v=spf1 redirect=loop.spf.test"
    self.spf.test       TXT "v=spf1 include:self.spf.test ip4:192.0.2.61"
    deep.spf.test       TXT "v=spf1 include:d1.deep.spf.test ip4:10.0.0.0/24"
    dN.deep.spf.test    TXT "v=spf1 include:d<N+1>.deep.spf.test ip4:10.0.N.0/24"   N = 1..29
    nospf.spf.test      TXT "some other text"               MX 10 mx.nospf.spf.test, MX 20 mx2.nospf.spf.test
    mx.nospf.spf.test   A 192.0.2.70, A 192.0.2.71, AAAA 2001:db8:70::1
    mx2.nospf.spf.test  A 192.0.2.72
    (nx.spf.test does not exist: NXDOMAIN)
    midway.spf.test     TXT "v=spf1 ip4:192.0.2.80 include:a.slow.test include:_after.spf.test"
    _after.spf.test     TXT "v=spf1 ip4:192.0.2.81"
    slowchain.spf.test  TXT "v=spf1 include:a.slow.test include:b.slow.test include:c.slow.test
                             include:d.slow.test include:e.slow.test ip4:192.0.2.90"
    probe-fast.spf.test TXT "v=spf1 ip4:192.0.2.0/24"

The forged-sender check of reject_sender_login_mismatch (tests/integration/test_sender_login_mismatch.py):

    forged.test         TXT "v=spf1 ip4:192.0.2.150 -all"

The whitelist tool (tests/integration/test_spf_to_greylist_whitelists.py):

    wl-one.test         TXT "v=spf1 include:_spf.wl-big.test ip4:192.0.2.101 ptr -all"
    wl-two.test         TXT "v=spf1 include:_spf.wl-big.test ip4:192.0.2.101 ip4:192.0.2.102 ~all"
    _spf.wl-big.test    TXT "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:100::/48 a:relay.wl-big.test"
    relay.wl-big.test   A 198.51.100.200
    wl-mx.test          (no TXT)  MX 10 mx1.wl-mx.test, MX 20 mx2.wl-mx.test
    mx1.wl-mx.test      A 192.0.2.110
    mx2.wl-mx.test      A 192.0.2.111, AAAA 2001:db8:111::1
    wl-empty.test       TXT "v=spf1 -all"
    (wl-nx.test does not exist)

senderscore (tests/integration/test_senderscore_dns.py), the zone score.senderscore.com served
here too (``local=``: never forwarded):

    1.113.0.203.score.senderscore.com   A 127.0.4.12    (client 203.0.113.1: score 12)
    2.113.0.203.score.senderscore.com   A 127.0.4.87    (client 203.0.113.2: score 87)
    4.113.0.203.score.senderscore.com   A 127.0.4.30    (client 203.0.113.4: score 30)
    (client 203.0.113.3 has no record: NXDOMAIN)
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

TTL = 300


def _zone() -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[tuple[str, int]]]]:
    """(TXT records, host addresses, MX records) — the docstring above, as data."""
    txt: dict[str, list[str]] = {
        "ip4.spf.test": ["v=spf1 ip4:192.0.2.44 ip4:192.0.2.128/25 -all"],
        "ip6.spf.test": ["v=spf1 ip6:2001:db8:1::/48 ip6:2001:db8:2::5 -all"],
        "include.spf.test": ["v=spf1 include:_inc.spf.test -all"],
        "_inc.spf.test": ["v=spf1 ip4:192.0.2.0/28"],
        "redirect.spf.test": ["v=spf1 redirect=_red.spf.test"],
        "_red.spf.test": ["v=spf1 ip4:198.51.100.7 ~all"],
        "a.spf.test": ["v=spf1 a -all"],
        "a24.spf.test": ["v=spf1 a/24 -all"],
        "ahost.spf.test": ["v=spf1 a:host.ahost.spf.test/28 -all"],
        "mx.spf.test": ["v=spf1 mx -all"],
        "mx24.spf.test": ["v=spf1 mx/24 -all"],
        "ptr.spf.test": ["v=spf1 ptr ptr:other.test -all"],
        "quals.spf.test": ["v=spf1 -ip4:192.0.2.50 ~ip4:192.0.2.51 ?ip4:192.0.2.52 +ip4:192.0.2.53 ~all"],
        "multi.spf.test": ["google-site-verification=abc", "v=spf1 ip4:192.0.2.54 -all"],
        "loop.spf.test": ["v=spf1 include:_loop.spf.test ip4:192.0.2.60"],
        "_loop.spf.test": ["v=spf1 redirect=loop.spf.test"],
        "self.spf.test": ["v=spf1 include:self.spf.test ip4:192.0.2.61"],
        "deep.spf.test": ["v=spf1 include:d1.deep.spf.test ip4:10.0.0.0/24"],
        "nospf.spf.test": ["some other text"],
        "midway.spf.test": ["v=spf1 ip4:192.0.2.80 include:a.slow.test include:_after.spf.test"],
        "_after.spf.test": ["v=spf1 ip4:192.0.2.81"],
        "slowchain.spf.test": [
            "v=spf1 include:a.slow.test include:b.slow.test include:c.slow.test include:d.slow.test"
            " include:e.slow.test ip4:192.0.2.90"
        ],
        "probe-fast.spf.test": ["v=spf1 ip4:192.0.2.0/24"],
        "forged.test": ["v=spf1 ip4:192.0.2.150 -all"],
        "wl-one.test": ["v=spf1 include:_spf.wl-big.test ip4:192.0.2.101 ptr -all"],
        "wl-two.test": ["v=spf1 include:_spf.wl-big.test ip4:192.0.2.101 ip4:192.0.2.102 ~all"],
        "_spf.wl-big.test": ["v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:100::/48 a:relay.wl-big.test"],
        "wl-empty.test": ["v=spf1 -all"],
    }
    for n in range(1, 30):
        txt[f"d{n}.deep.spf.test"] = [f"v=spf1 include:d{n + 1}.deep.spf.test ip4:10.0.{n}.0/24"]
    hosts = {
        "a.spf.test": ["192.0.2.20"],
        "a24.spf.test": ["203.0.113.10"],
        "host.ahost.spf.test": ["203.0.113.40"],
        "mail.mx.spf.test": ["192.0.2.30", "2001:db8:30::1"],
        "mail.mx24.spf.test": ["203.0.113.130"],
        "mx.nospf.spf.test": ["192.0.2.70", "192.0.2.71", "2001:db8:70::1"],
        "mx2.nospf.spf.test": ["192.0.2.72"],
        "relay.wl-big.test": ["198.51.100.200"],
        "mx1.wl-mx.test": ["192.0.2.110"],
        "mx2.wl-mx.test": ["192.0.2.111", "2001:db8:111::1"],
        "1.113.0.203.score.senderscore.com": ["127.0.4.12"],
        "2.113.0.203.score.senderscore.com": ["127.0.4.87"],
        "4.113.0.203.score.senderscore.com": ["127.0.4.30"],
    }
    mx = {
        "mx.spf.test": [("mail.mx.spf.test", 10)],
        "mx24.spf.test": [("mail.mx24.spf.test", 10)],
        "nospf.spf.test": [("mx.nospf.spf.test", 10), ("mx2.nospf.spf.test", 20)],
        "wl-mx.test": [("mx1.wl-mx.test", 10), ("mx2.wl-mx.test", 20)],
    }
    return txt, hosts, mx


def config_text(black_hole_port: int) -> str:
    txt, hosts, mx = _zone()
    lines = [
        "local=/test/",
        "local=/score.senderscore.com/",
        f"server=/slow.test/127.0.0.1#{black_hole_port}",
        f"local-ttl={TTL}",
    ]
    for name, records in txt.items():
        for record in records:
            lines.append(f'txt-record={name},"{record}"')
    for name, addresses in hosts.items():
        for address in addresses:  # one address per line: a host-record takes one A and one AAAA
            lines.append(f"host-record={name},{address},{TTL}")
    for name, targets in mx.items():
        for target, preference in targets:
            lines.append(f"mx-host={name},{target},{preference}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    """A loopback port free for both UDP and TCP (dnsmasq listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class BlackHole:
    """A UDP socket on loopback that receives DNS queries and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()


class Dnsmasq:
    """``Dnsmasq(binary, workdir).start()``; ``.nameserver`` is its ``127.0.0.1:port``."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.black_hole_socket = BlackHole()
        self.port = free_port()
        self.conf = self.workdir / "dnsmasq.conf"
        self.log_path = self.workdir / "dnsmasq.log"
        self.proc: subprocess.Popen | None = None

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def black_hole(self) -> str:
        return self.black_hole_socket.nameserver

    def start(self, timeout: float = 10.0, attempts: int = 3) -> "Dnsmasq":
        """Start; on a port taken between choosing and binding it, retry on another port."""
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except RuntimeError:
                if attempt + 1 == attempts or "Address already in use" not in self.log():
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> "Dnsmasq":
        self.conf.write_text(config_text(self.black_hole_socket.port))
        os.chmod(self.workdir, 0o755)
        os.chmod(self.conf, 0o644)
        command = [
            self.binary,
            "--no-resolv",
            "--no-hosts",
            "--keep-in-foreground",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            f"--conf-file={self.conf}",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            "--log-facility=-",
        ]
        if os.geteuid() == 0:
            command.append("--user=nobody")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import dns.message
        import dns.query

        deadline = time.monotonic() + timeout
        query = dns.message.make_query("ip4.spf.test", "TXT")
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                self._terminate()
                raise RuntimeError(f"dnsmasq exited with {self.proc.returncode}: {self.log()}")
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
                return
            except Exception:
                if time.monotonic() > deadline:
                    self._terminate()
                    raise RuntimeError(f"dnsmasq did not answer on port {self.port}: {self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()
        self.proc = None

    def stop(self) -> None:
        self._terminate()
        self.black_hole_socket.close()
