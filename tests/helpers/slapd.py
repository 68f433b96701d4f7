"""A throwaway OpenLDAP ``slapd`` with iRedMail's schema and a small iRedMail-like DIT.

Fixture API (``slapd_server`` in tests/conftest.py, one per test session)::

    server = slapd_server             # a Slapd, already running and seeded
    server.uri                        # 'ldap://127.0.0.1:<port>'
    server.suffix, server.basedn      # 'dc=iredmail,dc=org', 'o=domains,dc=iredmail,dc=org'
    server.rootdn, server.rootpw      # the manager account (writes)
    server.binddn, server.bindpw      # the read-only 'vmail' account apd binds as
    server.settings(**overrides)      # the ldap_* settings apd needs, as a dict
    server.stop(); server.start()     # a real restart: same port, same data
    server.tls                        # True when StartTLS is offered (self-signed; needs openssl)
    server.pause(); server.resume()   # SIGSTOP/SIGCONT: connections hang (slow-server tests)
    server.add(dn, attrs)             # add an entry as rootdn ({attr: [str, ...]})
    server.delete(dn)                 # delete an entry as rootdn

The seeded DIT (see SEED below) follows iRedMail's layout (spec/ldap.md §2):

* ``example.com``: active mail domain with alias domain ``alias.example.com``
  (and ``ALIAS2.example.com``, upper-case on purpose);
  users ``user@`` (shadowAddress ``user.alias@``, member of ``list@``),
  ``disabled@`` (accountStatus disabled), ``nodomain@`` (domainStatus disabled);
  the list ``list@`` (shadowAddress ``list.alias@``), the alias ``alias@``;
* ``backupmx.com``: active, ``domainBackupMX: yes``, alias domain ``alias.backupmx.com``;
* ``disabled.com``: ``accountStatus: disabled`` with alias domain ``alias.disabled.com``;
* ``nomail.com``: active but without ``enabledService: mail``;
* ``aliasonly.com``: active, alias domain ``aliasonly-alias.com`` without ``enabledService: domainalias``.

Schemas come from the Debian package (core, cosine, nis, inetorgperson) and from
``../shared/iredmail/`` beside the repository (iredmail.schema, amavisd.schema);
when that folder is absent the fixture skips with a reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.apd_process import free_port
from tests.helpers.policy_client import wait_for_port
from tests.helpers.servers import require_binary, unavailable

SHARED_IREDMAIL = Path(__file__).resolve().parents[2] / ".." / "shared" / "iredmail"
DEBIAN_SCHEMAS = Path("/etc/ldap/schema")
MODULE_PATHS = ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib/aarch64-linux-gnu/ldap")

SUFFIX = "dc=iredmail,dc=org"
BASEDN = f"o=domains,{SUFFIX}"
ROOTDN = f"cn=Manager,{SUFFIX}"
ROOTPW = "root-secret"
BINDDN = f"cn=vmail,{SUFFIX}"
BINDPW = "vmail-secret"

USER_CLASSES = ["inetOrgPerson", "shadowAccount", "amavisAccount", "mailUser"]


def _domain(name: str, **attrs: Any) -> tuple[str, dict]:
    entry = {
        "objectClass": ["mailDomain"],
        "domainName": [name],
        "accountStatus": ["active"],
        "enabledService": ["mail"],
    }
    entry.update({k: v if isinstance(v, list) else [v] for k, v in attrs.items()})
    return f"domainName={name},{BASEDN}", entry


def _ous(domain: str) -> list[tuple[str, dict]]:
    return [
        (f"ou={ou},domainName={domain},{BASEDN}", {"objectClass": ["organizationalUnit"], "ou": [ou]})
        for ou in ("Users", "Groups", "Aliases", "Externals")
    ]


def _user(mail: str, **attrs: Any) -> tuple[str, dict]:
    local, domain = mail.split("@")
    entry = {
        "objectClass": USER_CLASSES,
        "mail": [mail],
        "uid": [local],
        "cn": [local],
        "sn": [local],
        "accountStatus": ["active"],
        "enabledService": ["mail", "smtp", "shadowaddress"],
        "shadowLastChange": ["19000"],
        "userPassword": ["{PLAIN}x"],
    }
    entry.update({k: v if isinstance(v, list) else [v] for k, v in attrs.items()})
    return f"mail={mail},ou=Users,domainName={domain},{BASEDN}", entry


SEED: list[tuple[str, dict]] = [
    (SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["iredmail"], "o": ["iredmail"]}),
    (
        BINDDN,
        {"objectClass": ["organizationalRole", "simpleSecurityObject"], "cn": ["vmail"], "userPassword": [BINDPW]},
    ),
    (BASEDN, {"objectClass": ["organization"], "o": ["domains"]}),
    _domain(
        "example.com",
        enabledService=["mail", "domainalias"],
        domainAliasName=["alias.example.com", "ALIAS2.example.com"],
        domainBackupMX="no",
    ),
    *_ous("example.com"),
    _user("user@example.com", shadowAddress=["user.alias@example.com"], memberOfGroup=["list@example.com"]),
    _user("disabled@example.com", accountStatus="disabled"),
    _user("nodomain@example.com", domainStatus="disabled"),
    _user("member2@example.com", memberOfGroup=["list@example.com"], shadowAddress=["m2@example.com"]),
    _user("inactive-member@example.com", memberOfGroup=["list@example.com"], accountStatus="disabled"),
    (
        f"mail=list@example.com,ou=Groups,domainName=example.com,{BASEDN}",
        {
            "objectClass": ["mailList"],
            "mail": ["list@example.com"],
            "shadowAddress": ["list.alias@example.com"],
            "accountStatus": ["active"],
            "accessPolicy": ["membersonly"],
            "enabledService": ["mail", "deliver", "mlmmj"],
            "listAllowedUser": ["allowed@other.org"],
            "listModerator": ["moderator@example.com"],
        },
    ),
    (
        f"mail=alias@example.com,ou=Aliases,domainName=example.com,{BASEDN}",
        {
            "objectClass": ["mailAlias"],
            "mail": ["alias@example.com"],
            "accountStatus": ["active"],
            "mailForwardingAddress": ["user@example.com", "outside@other.org"],
        },
    ),
    (
        f"mail=external@other.org,ou=Externals,domainName=example.com,{BASEDN}",
        {
            "objectClass": ["mailExternalUser"],
            "mail": ["external@other.org"],
            "memberOfGroup": ["list@example.com"],
            "accountStatus": ["active"],
        },
    ),
    _domain("backupmx.com", domainBackupMX="yes", domainAliasName=["alias.backupmx.com"]),
    _domain("disabled.com", accountStatus="disabled", domainAliasName=["alias.disabled.com"]),
    _domain("nomail.com", enabledService=["smtp"]),
    _domain("aliasonly.com", domainAliasName=["aliasonly-alias.com"]),
]


def slapd_conf(workdir: Path, schemas: list[Path], module_path: str | None, tls: bool) -> str:
    lines = [f"include {path}" for path in schemas]
    if tls:
        lines += [f"TLSCertificateFile {workdir / 'cert.pem'}", f"TLSCertificateKeyFile {workdir / 'key.pem'}"]
    lines += [f"pidfile {workdir / 'slapd.pid'}", f"argsfile {workdir / 'slapd.args'}"]
    if module_path:
        lines += [f"modulepath {module_path}", "moduleload back_mdb"]
    lines += [
        "database mdb",
        f'suffix "{SUFFIX}"',
        f'rootdn "{ROOTDN}"',
        f"rootpw {ROOTPW}",
        f"directory {workdir / 'data'}",
        "maxsize 67108864",
        # iRedMail's indexes for the attributes apd searches
        "index objectClass,mail,shadowAddress,domainName,domainAliasName,memberOfGroup eq",
        # the vmail account reads everything, anonymous users only bind
        f'access to attrs=userPassword by dn.exact="{ROOTDN}" write by anonymous auth by * none',
        f'access to * by dn.exact="{BINDDN}" read by dn.exact="{ROOTDN}" write by * none',
    ]
    return "\n".join(lines) + "\n"


def ldif(entries: list[tuple[str, dict]]) -> str:
    blocks = []
    for dn, attrs in entries:
        lines = [f"dn: {dn}"] + [f"{name}: {value}" for name, values in attrs.items() for value in values]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


class Slapd:
    suffix, basedn, rootdn, rootpw, binddn, bindpw = SUFFIX, BASEDN, ROOTDN, ROOTPW, BINDDN, BINDPW

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.slapd = require_binary("slapd")
        self.ldapadd = require_binary("ldapadd")
        self.ldapdelete = require_binary("ldapdelete")
        schemas = [DEBIAN_SCHEMAS / f"{name}.schema" for name in ("core", "cosine", "nis", "inetorgperson")]
        missing = [str(p) for p in schemas if not p.is_file()]
        if missing:
            unavailable(f"Debian slapd schemas missing: {', '.join(missing)}")
        shared = SHARED_IREDMAIL.resolve()
        iredmail = [shared / "iredmail.schema", shared / "amavisd.schema"]
        if not all(p.is_file() for p in iredmail):
            # Not a server failure: the reference schemas live outside the repository.
            pytest.skip(f"iRedMail LDAP schemas not found in {shared} (the 'shared' folder beside the repository)")
        self.schemas = schemas + iredmail
        module_path = next((p for p in MODULE_PATHS if os.path.exists(os.path.join(p, "back_mdb.so"))), None)
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / "slapd.conf"
        self.tls = self._make_certificate()
        self.conf.write_text(slapd_conf(self.workdir, self.schemas, module_path, self.tls))

    def _make_certificate(self) -> bool:
        """A self-signed certificate for StartTLS (apd, like iRedAPD, does not verify it)."""
        openssl = shutil.which("openssl")
        if not openssl:
            return False
        cmd = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        cmd += ["-subj", "/CN=127.0.0.1", "-days", "2"]
        cmd += ["-keyout", str(self.workdir / "key.pem"), "-out", str(self.workdir / "cert.pem")]
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0

    def start(self, timeout: float = 15.0) -> "Slapd":
        self.log = open(self.workdir / "slapd.log", "ab")
        # -d 0: stay in the foreground (our child, killed by pid) without debug output.
        self.proc = subprocess.Popen(
            [self.slapd, "-f", str(self.conf), "-h", self.uri, "-d", "0"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except TimeoutError:
            self.stop()
            unavailable(f"slapd did not start on {self.uri}: {self.read_log()[-2000:]}")
        return self

    def read_log(self) -> str:
        path = self.workdir / "slapd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it paused
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP, and wait until every thread has really stopped (kill() returns before)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not self._all_threads_stopped():
            if time.monotonic() > deadline:
                raise TimeoutError("slapd did not stop on SIGSTOP")
            time.sleep(0.005)

    def _all_threads_stopped(self) -> bool:
        tasks = Path(f"/proc/{self.proc.pid}/task")
        if not tasks.is_dir():  # no procfs: give the signal a moment instead
            time.sleep(0.2)
            return True
        states = []
        for task in tasks.iterdir():
            try:
                # the state letter follows the ')' closing the command name
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                continue
        return bool(states) and all(state in ("T", "t") for state in states)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def _tool(self, binary: str, text: str, *args: str) -> None:
        cmd = [binary, "-x", "-H", self.uri, "-D", self.rootdn, "-w", self.rootpw, *args]
        result = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"{os.path.basename(binary)} failed: {result.stderr.strip()}")

    def seed(self) -> None:
        self._tool(self.ldapadd, ldif(SEED))

    def add(self, dn: str, attrs: dict[str, list[str]]) -> None:
        self._tool(self.ldapadd, ldif([(dn, attrs)]))

    def delete(self, dn: str) -> None:
        self._tool(self.ldapdelete, "", dn)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        values = {
            "ldap_uri": self.uri,
            "ldap_basedn": self.basedn,
            "ldap_binddn": self.binddn,
            "ldap_bindpw": self.bindpw,
            "ldap_enable_tls": False,
        }
        values.update(overrides)
        return values


def start_seeded(workdir: Path) -> Slapd:
    server = Slapd(workdir).start()
    try:
        server.seed()
    except Exception:
        server.stop()
        raise
    return server
