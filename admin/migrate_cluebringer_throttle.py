"""``apd-migrate-cluebringer-throttle``: Cluebringer's quotas into apd's ``throttle`` settings.

Each enabled quota becomes one setting (admin-tools.md §6): ``default_inbound`` and
``default_outbound`` the global ones (``@.``), ``inbound_<X>`` and ``outbound_<X>`` X's own,
with X an email address, a domain (stored as ``@X``) or another account. The period is the
quota's; ``MessageCount`` sets ``max_msgs``, ``MessageCumulativeSize`` ``max_quota``, and the
limits not given are -1 (inherit).

Unlike iRedAPD's script: a setting that exists already is kept and prints ``[SKIP]`` (iRedAPD
printed a duplicate-key error, or added a second row on PostgreSQL); an X that is an IP address,
a network or a wildcard gets its type's priority, as apd-throttle-admin gives it (iRedAPD: 0);
a quota whose name or account cannot be migrated is named; disabled limits are left out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from admin.cluebringer import run_migration
from apd.address import classify_strict, is_email, is_valid_domain
from apd.log_escape import escape_controls
from apd.throttle.rules import specificity

KINDS = ("inbound", "outbound")
LIMIT_COLUMNS = {"MessageCount": "max_msgs", "MessageCumulativeSize": "max_quota"}
UNSET = -1
NO_QUOTAS = "No throttle settings found. Exit."


@dataclass(frozen=True)
class Quota:
    id: int
    name: str
    period: int


@dataclass(frozen=True)
class ThrottleSetting:
    account: str
    kind: str
    priority: int
    period: int
    max_msgs: int = UNSET
    max_quota: int = UNSET

    def values(self) -> dict[str, int]:
        return {
            "period": self.period,
            "msg_size": UNSET,
            "max_rcpts": UNSET,
            "max_msgs": self.max_msgs,
            "max_quota": self.max_quota,
        }


def account_of(name: str) -> tuple[str, str] | str:
    """(account, kind) named by a quota, or why it names none."""
    kind, _, target = name.partition("_")
    if kind not in KINDS or not target:
        return f"[SKIP] Not an inbound_*/outbound_*/default_* quota: {escape_controls(name)}"
    if is_email(target):
        return target.lower(), kind
    if is_valid_domain(target):
        return "@" + target.lower(), kind
    if classify_strict(target):
        return target, kind
    return f"[SKIP] Not a valid account in quota {escape_controls(name)}"


def setting_of(quota: Quota, limits: Iterable[tuple[str, int]]) -> ThrottleSetting | str:
    """The throttle setting of one quota and its limits (type, counter limit), or why none."""
    name = quota.name.strip()
    if name in ("default_inbound", "default_outbound"):
        named: tuple[str, str] | str = ("@.", name.split("_", 1)[1])
    else:
        named = account_of(name)
    if isinstance(named, str):
        return named
    account, kind = named
    values = {column: UNSET for column in LIMIT_COLUMNS.values()}
    for limit_type, counter_limit in limits:
        column = LIMIT_COLUMNS.get(limit_type)
        if column:
            values[column] = int(counter_limit)
    return ThrottleSetting(account, kind, specificity(account), int(quota.period), **values)


# --- reading Cluebringer


def read_quotas(source_db) -> list[tuple[Quota, list[tuple[str, int]]]]:
    quotas = [
        Quota(int(i), str(n or ""), int(p or 0))
        for i, n, p in source_db.query("SELECT id, name, period FROM quotas WHERE disabled = 0 ORDER BY id")
    ]
    limits: dict[int, list[tuple[str, int]]] = {}
    for quota_id, limit_type, counter_limit in source_db.query(
        "SELECT quotasid, type, counterlimit FROM quotas_limits WHERE disabled = 0 ORDER BY id"
    ):
        if quota_id is not None and counter_limit is not None:
            limits.setdefault(int(quota_id), []).append((str(limit_type or ""), int(counter_limit)))
    return [(quota, limits.get(quota.id, [])) for quota in quotas]


# --- writing apd's table


def migrate(source_db, throttle_settings, out: Callable[[str], None] = print) -> None:
    found = read_quotas(source_db)
    if not found:
        out(NO_QUOTAS)
        return
    out(f"Total {len(found)} throttle settings.")
    for quota, limits in found:
        setting = setting_of(quota, limits)
        if isinstance(setting, str):
            out(setting)
            continue
        if throttle_settings.get(setting.account, setting.kind):
            out(f"[SKIP] Throttle setting of {escape_controls(setting.account)} ({setting.kind}) exists, kept.")
            continue
        throttle_settings.save(setting.account, setting.kind, setting.priority, setting.values())
        out(
            f"+ {setting.kind} throttle of {escape_controls(setting.account)}: period={setting.period}, "
            f"max_msgs={setting.max_msgs}, max_quota={setting.max_quota}, priority={setting.priority}."
        )


def main(argv: Sequence[str] | None = None) -> int:
    from apd.store.throttle_settings import ThrottleSettings

    return run_migration(
        "apd-migrate-cluebringer-throttle",
        __doc__.split("\n\n")[0],
        argv,
        lambda source_db, store: migrate(source_db, ThrottleSettings(store.iredapd)),
    )


if __name__ == "__main__":
    sys.exit(main())
