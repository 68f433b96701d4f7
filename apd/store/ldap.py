"""Mail-account facts from an iRedMail OpenLDAP directory (spec/ldap.md).

``LdapAccounts`` answers the same questions as ``SqlAccounts`` (is_local_domain,
alias_target) plus the LDAP-only lookups of ldap.md §3. One connection per worker,
opened on first use (so after fork), reused, and re-opened after a failure. Every
connect, bind and search is bounded by ``LDAP_TIMEOUT``. While the directory is down,
lookups raise ``StoreUnavailable`` at once (fail-fast back-off, as ``Database`` does)
and one log line marks each change of state.

Every value put into a filter goes through ``escape_filter_chars`` (RFC 4515), so an
address such as ``*)(uid=*`` matches nothing instead of everything.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import ldap
from ldap.dn import escape_dn_chars
from ldap.filter import escape_filter_chars

from apd.address import is_domain
from apd.errors import StoreError, StoreUnavailable
from apd.login_mismatch import SenderRelations
from apd.store.accounts import collect_alias_targets
from apd.store.base import BACKOFF_FIRST, BACKOFF_MAX

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, list[str]]]

BIND_REFUSED = "LDAP bind failed: incorrect bind dn or password."

# Driver errors that mean "the directory cannot answer now", not "the question is wrong".
_OUTAGES: tuple[type[ldap.LDAPError], ...] = (
    ldap.SERVER_DOWN,
    ldap.CONNECT_ERROR,
    ldap.TIMEOUT,
    ldap.TIMELIMIT_EXCEEDED,
    ldap.UNAVAILABLE,
    ldap.BUSY,
)

# Objects the sender/recipient lookup may find (ldap.md §3.1).
_ACCOUNT_CLASSES = "(|(objectClass=mailUser)(objectClass=mailList)(objectClass=mailAlias))"


def _q(value: str) -> str:
    """A filter assertion value, RFC 4515-escaped."""
    return escape_filter_chars(value)


# --- filters (pure; ldap.md §3). Each takes raw values and escapes them itself.


def local_domain_filter(domain: str, include_alias: bool = True, include_backupmx: bool = True) -> str:
    d = _q(domain)
    names = f"(|(domainName={d})(domainAliasName={d}))" if include_alias else f"(domainName={d})"
    backupmx = "" if include_backupmx else "(!(domainBackupMX=yes))"
    return f"(&(objectClass=mailDomain)(accountStatus=active)(enabledService=mail){names}{backupmx})"


def alias_target_filter(domain: str) -> str:
    return f"(&(objectClass=mailDomain)(accountStatus=active)(domainAliasName={_q(domain)}))"


def alias_targets_filter(domains: Sequence[str]) -> str:
    if len(domains) == 1:
        return alias_target_filter(domains[0])
    names = "".join(f"(domainAliasName={_q(domain)})" for domain in domains)
    return f"(&(objectClass=mailDomain)(accountStatus=active)(|{names}))"


def primary_and_alias_filter(domain: str) -> str:
    d = _q(domain)
    return f"(&(objectClass=mailDomain)(|(domainName={d})(domainAliasName={d})))"


def account_filter(address: str) -> str:
    a = _q(address)
    return f"(&(!(domainStatus=disabled))(|(mail={a})(shadowAddress={a})){_ACCOUNT_CLASSES})"


def list_members_filter(list_address: str) -> str:
    lst = _q(list_address)
    return f"(&(accountStatus=active)(memberOfGroup={lst})(|(objectclass=mailUser)(objectClass=mailExternalUser)))"


def members_and_moderators_filter(list_address: str) -> str:
    lst = _q(list_address)
    return (
        f"(|(&(memberOfGroup={lst})(|(objectClass=mailUser)(objectClass=mailExternalUser)))"
        f"(&(objectclass=mailList)(mail={lst})))"
    )


def shadow_address_users_filter(addresses: Iterable[str]) -> str:
    terms = "".join(f"(mail={_q(a)})(shadowAddress={_q(a)})" for a in addresses)
    return f"(&(objectClass=mailUser)(enabledService=shadowaddress)(|{terms}))"


def domain_alias_names_filter(domains: Iterable[str]) -> str:
    terms = "".join(f"(domainName={_q(d)})(domainAliasName={_q(d)})" for d in domains)
    return f"(&(objectClass=mailDomain)(enabledService=domainalias)(|{terms}))"


def login_mismatch_filter(
    sender: str, sasl_username: str, strictly: bool, list_member: bool, list_address: str | None = None
) -> str | None:
    """ldap.md §3.5: may ``sasl_username`` send as ``sender``? None when neither setting is on.

    ``list_address`` (default: the sender) is the list or alias the membership terms ask about:
    the check passes the sender's alias-domain rewrite there, as the SQL branch does.
    """
    s, u = _q(sender), _q(sasl_username)
    lst = s if list_address is None else _q(list_address)
    user_alias = f"(&(objectClass=mailUser)(mail={u})(shadowAddress={s}))"
    list_member_f = f"(&(objectClass=mailUser)(|(mail={u})(shadowAddress={u}))(memberOfGroup={lst}))"
    alias_member = f"(&(objectClass=mailAlias)(|(mail={lst})(shadowAddress={lst}))(mailForwardingAddress={u}))"
    if strictly and list_member:
        return f"(|{user_alias}{list_member_f}{alias_member})"
    if strictly:
        return user_alias
    if list_member:
        return f"(|{list_member_f}{alias_member})"
    return None


ACTIVE_MLMMJ_LISTS_FILTER = "(&(objectClass=mailList)(enabledService=mlmmj)(accountStatus=active))"


def mlmmj_list_filter(list_address: str) -> str:
    """The active mlmmj list ``list_address`` (iRedAPD's filter names no list: any list matched)."""
    lst = _q(list_address)
    return f"(&(objectClass=mailList)(enabledService=mlmmj)(accountStatus=active)(|(mail={lst})(shadowAddress={lst})))"


def _decode(attrs: dict[str, list[bytes]]) -> dict[str, list[str]]:
    return {name: [v.decode("utf-8", "replace") for v in values] for name, values in attrs.items()}


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ldap.LDAPError) and exc.args and isinstance(exc.args[0], dict):
        info = exc.args[0]
        text = " ".join(str(info.get(k, "")) for k in ("desc", "info") if info.get(k))
        return text or type(exc).__name__
    return " ".join(str(exc).split()) or type(exc).__name__


class _BindFailed(Exception):
    """The server answered the bind with an error other than bad credentials."""

    def __init__(self, cause: ldap.LDAPError):
        super().__init__(str(cause))
        self.cause = cause


class LdapAccounts:
    """Account lookups against iRedMail's DIT; same interface as ``SqlAccounts``."""

    def __init__(self, settings: Any, clock: Callable[[], float] = time.monotonic, hostname: str | None = None):
        self.uri: str = settings.ldap_uri
        self.basedn: str = settings.ldap_basedn
        self._binddn: str = settings.ldap_binddn
        self._bindpw: str = settings.ldap_bindpw
        self._starttls: bool = settings.ldap_enable_tls
        self.timeout: float = float(settings.LDAP_TIMEOUT)
        # iRedAPD counts the server's own host name as local (ldap.md §3.2 step 2).
        self._hostname = socket.gethostname() if hostname is None else hostname
        self._clock = clock
        self._conn: Any = None
        self._pid = os.getpid()
        self._inherited: list[Any] = []
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        # (database, kind) of each error, when metrics are on (the worker sets it, as on Database)
        self.on_error: Callable[[str, str], None] | None = None

    # --- connection management

    @property
    def available(self) -> bool:
        return self._down_since is None

    def _connection(self) -> Any:
        if self._pid != os.getpid():
            # A connection made before fork belongs to the parent: keep it referenced (its
            # destructor would send an unbind on the shared socket) and open our own.
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
        if self._conn is not None:
            return self._conn
        now = self._clock()
        if self._down_since is not None and now < self._retry_at:
            raise self._error(
                StoreUnavailable, f"LDAP server {self.uri} is unavailable (retrying in {self._retry_at - now:.1f}s)"
            )
        try:
            conn = self._open()
        except ldap.INVALID_CREDENTIALS as exc:
            self._mark_down(exc, BIND_REFUSED)
            raise self._error(StoreUnavailable, f"LDAP server {self.uri}: {BIND_REFUSED}") from exc
        except _BindFailed as failed:
            message = f"LDAP bind failed: {_one_line(failed.cause)}"
            self._mark_down(failed.cause, message)
            raise self._error(StoreUnavailable, f"LDAP server {self.uri}: {message}") from failed.cause
        except ldap.LDAPError as exc:
            self._mark_down(exc)
            raise self._error(StoreUnavailable, f"LDAP server {self.uri} is unavailable: {_one_line(exc)}") from exc
        if self._down_since is not None:
            log.warning("LDAP server %s is reachable again", self.uri)
        self._down_since = None
        self._backoff = BACKOFF_FIRST
        self._conn = conn
        return conn

    def _open(self) -> Any:
        conn = ldap.initialize(self.uri)
        try:
            conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
            conn.set_option(ldap.OPT_REFERRALS, 0)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, self.timeout)
            conn.set_option(ldap.OPT_TIMEOUT, self.timeout)
            conn.timeout = self.timeout  # python-ldap's wait for synchronous operations (bind, StartTLS)
            if self._starttls or self.uri.lower().startswith("ldaps:"):
                # As iRedAPD: certificates are not verified (ldap.md §1).
                conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_NEVER)
                conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
            if self._starttls:
                conn.start_tls_s()
            try:
                conn.simple_bind_s(self._binddn, self._bindpw)
            except _OUTAGES + (ldap.INVALID_CREDENTIALS,):
                raise
            except ldap.LDAPError as exc:  # refused for another reason (e.g. empty password)
                raise _BindFailed(exc) from exc
        except (ldap.LDAPError, _BindFailed):
            _unbind(conn)
            raise
        return conn

    def _error(self, kind_of_error: type[StoreError], text: str, kind: str = "unavailable") -> StoreError:
        """The exception to raise, named ``ldap`` for the fail-safe count, reported to ``on_error``."""
        error = kind_of_error(text)
        error.database = "ldap"  # type: ignore[attr-defined]
        if self.on_error is not None:
            self.on_error("ldap", kind)
        return error

    def _mark_down(self, exc: BaseException, message: str = "") -> None:
        if self._down_since is None:
            if message:
                log.error("%s", message)
            else:
                log.error("LDAP server %s is unavailable: %s", self.uri, _one_line(exc))
            self._down_since = self._clock()
        else:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._retry_at = self._clock() + self._backoff

    def close(self) -> None:
        if self._conn is None:
            return
        if self._pid == os.getpid():
            _unbind(self._conn)
        else:  # the parent's connection: must not be unbound, not even by garbage collection
            self._inherited.append(self._conn)
        self._conn = None

    # --- searching

    def search(
        self, base: str, scope: int, filterstr: str, attrs: Sequence[str] | None = None, none_if_no_base: bool = False
    ) -> list[Entry] | None:
        """Entries ``(dn, {attr: [str]})``. A missing ``base`` gives [] (or None with ``none_if_no_base``).

        ``filterstr`` must already hold escaped values (the ``*_filter`` helpers above).
        """
        attrlist = list(attrs) if attrs is not None else None
        # A reused connection may have been dropped by a server restart: one silent retry.
        for attempt in range(2):
            reused = self._conn is not None
            conn = self._connection()
            try:
                raw = conn.search_ext_s(base, scope, filterstr, attrlist, timeout=self.timeout)
            except ldap.NO_SUCH_OBJECT:
                return None if none_if_no_base else []
            except _OUTAGES as exc:
                self.close()
                if attempt == 0 and reused and isinstance(exc, ldap.SERVER_DOWN) and self._down_since is None:
                    continue
                self._mark_down(exc)
                kind = "timeout" if isinstance(exc, (ldap.TIMEOUT, ldap.TIMELIMIT_EXCEEDED)) else "unavailable"
                raise self._error(
                    StoreUnavailable, f"LDAP server {self.uri} is unavailable: {_one_line(exc)}", kind
                ) from exc
            except ldap.LDAPError as exc:
                raise self._error(StoreError, f"LDAP search failed: {_one_line(exc)}", "error") from exc
            # Referrals come back with dn None; iRedAPD ignores them too (OPT_REFERRALS off).
            return [(dn, _decode(values)) for dn, values in raw if dn is not None]
        raise AssertionError("unreachable")

    # --- account questions (the SqlAccounts interface)

    def is_local_domain(
        self,
        domain: str,
        include_alias: bool = True,
        include_backupmx: bool = True,
        alias_target: Callable[[str], str | None] | None = None,
    ) -> bool:
        """ldap.md §3.2: an active mail domain (or, optionally, an alias name of one). One search
        answers both, so ``alias_target`` (SqlAccounts' shortcut) is not needed here."""
        if not is_domain(domain):
            return False
        if domain == self._hostname:
            return True
        found = self.search(
            self.basedn, ldap.SCOPE_ONELEVEL, local_domain_filter(domain, include_alias, include_backupmx), ["dn"]
        )
        return bool(found)

    def alias_target(self, domain: str) -> str | None:
        """ldap.md §3.3: the primary domain whose ``domainAliasName`` is ``domain``."""
        return self.alias_targets([domain])[domain.lower()]

    def alias_targets(self, domains: Iterable[str]) -> dict[str, str | None]:
        """``alias_target`` of several domains in one search."""

        def pairs(wanted: list[str]) -> Iterator[tuple[str, str]]:
            attrs = ["domainName", "domainAliasName"]
            for _dn, entry in self.search(self.basedn, ldap.SCOPE_ONELEVEL, alias_targets_filter(wanted), attrs):
                names = _values(entry, "domainName")
                if names:
                    for alias in _values(entry, "domainAliasName"):
                        yield alias, names[0]

        return collect_alias_targets(domains, pairs)

    # --- LDAP-only lookups for later checks

    def get_account(self, address: str, attrs: Sequence[str] | None = None) -> tuple[str, dict] | tuple[None, None]:
        """ldap.md §3.1: the first mailUser/mailList/mailAlias with this mail or shadowAddress.

        Returns ``(dn, {attr: [str]})`` or ``(None, None)``; ``attrs`` None means all attributes.
        accountStatus is not checked (as iRedAPD); a disabled domainStatus hides the entry.
        """
        if not address or not _matchable(address):
            return None, None
        found = self.search(self.basedn, ldap.SCOPE_SUBTREE, account_filter(address), attrs)
        if not found:
            return None, None
        return found[0]

    def primary_and_alias_domains(self, domain: str) -> list[str]:
        """ldap.md §3.4: the domain's primary name and alias names (lower case, no duplicates).

        Empty when nothing is found (ldap.md §4 recommends that over iRedAPD's None).
        """
        if not is_domain(domain):
            return []
        found = self.search(
            self.basedn, ldap.SCOPE_ONELEVEL, primary_and_alias_filter(domain), ["domainName", "domainAliasName"]
        )
        if not found:
            return []
        attrs = found[0][1]
        return _distinct(v.lower() for v in _values(attrs, "domainName") + _values(attrs, "domainAliasName"))

    def _domain_dn(self, domain: str) -> str:
        return f"domainName={escape_dn_chars(domain.lower())},{self.basedn}"

    def list_members(self, list_address: str, list_domain: str) -> list[str] | None:
        """ldap.md §3.6 membersonly: mail and shadowAddress of the list's active members.

        None when the domain entry does not exist (an alias domain): iRedAPD's plugin then
        gives DUNNO, so callers must not treat it as "no members".
        """
        if not _matchable(list_address):
            return []
        found = self.search(
            self._domain_dn(list_domain),
            ldap.SCOPE_SUBTREE,
            list_members_filter(list_address),
            ["mail", "shadowAddress"],
            none_if_no_base=True,
        )
        if found is None:
            return None
        return _distinct(v.lower() for _dn, a in found for name in ("mail", "shadowAddress") for v in _values(a, name))

    def list_members_and_moderators(self, list_address: str, list_domain: str) -> list[str] | None:
        """ldap.md §3.6 membersandmoderatorsonly: members (any status) plus the list's listAllowedUser."""
        if not _matchable(list_address):
            return []
        names = ("mail", "shadowAddress", "listAllowedUser")
        found = self.search(
            self._domain_dn(list_domain),
            ldap.SCOPE_SUBTREE,
            members_and_moderators_filter(list_address),
            list(names),
            none_if_no_base=True,
        )
        if found is None:
            return None
        return _distinct(v.lower() for _dn, a in found for name in names for v in _values(a, name))

    def shadow_addresses_of(self, addresses: Sequence[str], domain: str) -> list[str]:
        """ldap.md §3.6 moderatorsonly: all addresses of the users (in ``domain``) owning ``addresses``."""
        addresses = [a for a in addresses if _matchable(a)]
        if not addresses:
            return []
        found = self.search(
            f"ou=Users,{self._domain_dn(domain)}",
            ldap.SCOPE_ONELEVEL,
            shadow_address_users_filter(addresses),
            ["mail", "shadowAddress"],
        )
        return _distinct(v.lower() for _dn, a in found for name in ("mail", "shadowAddress") for v in _values(a, name))

    def domain_alias_names(self, domains: Sequence[str]) -> list[str]:
        """ldap.md §3.6 moderatorsonly: the primary and alias names (lower case) of the domains
        with the ``domainalias`` service that carry any of ``domains`` as either name."""
        domains = [d for d in domains if is_domain(d) and _matchable(d)]
        if not domains:
            return []
        found = self.search(
            self.basedn,
            ldap.SCOPE_ONELEVEL,
            domain_alias_names_filter(domains),
            ["domainName", "domainAliasName"],
        )
        names = ("domainName", "domainAliasName")
        return _distinct(v.lower() for _dn, a in found for name in names for v in _values(a, name))

    def sender_login_allowed(self, sender: str, sasl_username: str, strictly: bool, list_member: bool) -> bool:
        """ldap.md §3.5: is ``sender`` an alias of, or a list/alias ``sasl_username`` belongs to?"""
        filterstr = login_mismatch_filter(sender, sasl_username, strictly, list_member)
        if filterstr is None or not _matchable(sender, sasl_username):
            return False
        return bool(self.search(self.basedn, ldap.SCOPE_SUBTREE, filterstr, ["dn"]))

    def has_active_mlmmj_lists(self) -> bool:
        """ldap.md §3.5: does any active mlmmj mailing list exist?"""
        return bool(self.search(self.basedn, ldap.SCOPE_SUBTREE, ACTIVE_MLMMJ_LISTS_FILTER, ["dn"]))

    def sender_relations(
        self, sender: str, list_address: str, sasl_username: str, strictly: bool, list_member: bool
    ) -> SenderRelations:
        """ldap.md §3.5 in one search: the login's own alias (``strictly``) or membership of
        ``list_address`` (``list_member``) allows; else, with either setting (as iRedAPD), is
        ``list_address`` an active mlmmj list? mailUser/mailAlias entries can only match the
        first terms and mailList entries only the last, so objectClass tells them apart."""
        allow = login_mismatch_filter(sender, sasl_username, strictly, list_member, list_address)
        if allow is None or not _matchable(sender, list_address, sasl_username):
            return SenderRelations()
        filterstr = f"(|{allow}{mlmmj_list_filter(list_address)})"
        found = self.search(self.basedn, ldap.SCOPE_SUBTREE, filterstr, ["objectClass"])
        classes = {c.lower() for _dn, attrs in found for c in _values(attrs, "objectClass")}
        return SenderRelations(allowed=bool(classes & {"mailuser", "mailalias"}), mlmmj_list="maillist" in classes)


def _matchable(*values: str) -> bool:
    """False for values no entry can hold. slapd's IA5 matching stops at a NUL, so an
    escaped ``user@x\\00`` would still find ``user@x``; such a value is never an address."""
    return not any("\x00" in v for v in values)


def _values(attrs: dict[str, list[str]], name: str) -> list[str]:
    """Attribute values by case-insensitive name (servers echo the requested spelling)."""
    for key, values in attrs.items():
        if key.lower() == name.lower():
            return values
    return []


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _unbind(conn: Any) -> None:
    try:
        conn.unbind_s()
    except ldap.LDAPError:  # the connection is gone either way
        pass
