"""``apd-migrate-cluebringer-greylisting``: Cluebringer's greylisting settings into apd's tables.

What moves (admin-tools.md §6): Cluebringer's "Greylisting Inbound Emails" policy becomes the
global setting ``('@.', '@.')``; the members of the policy group ``no_greylisting_for_internal``
get a setting of their own; the enabled ``SenderIP:`` entries of ``greylisting_whitelist``
become whitelists of everyone (``@.``). Rows that exist already are kept and print ``[SKIP]``,
so a second run changes nothing.

Unlike iRedAPD's script: the group's members get greylisting turned off (``active = 0``: the
group exists to spare them; iRedAPD wrote ``active = 1``), a CIDR member gets the priority of a
CIDR setting instead of stopping the run with a KeyError, and an entry that cannot be migrated
is named instead of being dropped in silence.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from admin.cluebringer import run_migration
from admin.greylisting_admin import is_ip_or_network, priority
from apd.address import classify_strict
from apd.log_escape import escape_controls

ANYONE = "@."
GLOBAL_POLICY = "Greylisting Inbound Emails"
EXEMPT_GROUP = "no_greylisting_for_internal"
SENDER_IP = "SenderIP:"
ACCOUNT_TYPES = frozenset(
    {"email", "domain", "subdomain", "top_level_domain", "catchall", "ip", "wildcard_ip", "cidr_network"}
)


@dataclass(frozen=True)
class MemberSetting:
    account: str
    priority: int


@dataclass(frozen=True)
class Whitelist:
    sender: str
    comment: str


def member_setting(member: str) -> MemberSetting | str:
    """The setting of an exempt group member, or why it has none."""
    if classify_strict(member) not in ACCOUNT_TYPES:
        return f"[SKIP] Not a valid account: {escape_controls(member)}"
    return MemberSetting(member, priority(member))


def whitelist_entry(source: str, comment: str | None) -> Whitelist | str | None:
    """A ``SenderIP:`` entry as a whitelist of everyone; None for other sources (not migrated)."""
    if not source.startswith(SENDER_IP):
        return None
    address = source[len(SENDER_IP) :].strip()
    if not is_ip_or_network(address):
        return f"[SKIP] Not an IP address or network: {escape_controls(source)}"
    return Whitelist(address, (comment or "").title())


# --- reading Cluebringer


def global_policy_on(source_db) -> bool:
    row = source_db.query_one(
        "SELECT 1 FROM greylisting WHERE name = %s AND usegreylisting = 1 LIMIT 1", (GLOBAL_POLICY,)
    )
    return row is not None


def exempt_members(source_db) -> list[str]:
    rows = source_db.query(
        "SELECT m.member FROM policy_group_members m JOIN policy_groups g ON m.policygroupid = g.id"
        " WHERE g.name = %s ORDER BY m.id",
        (EXEMPT_GROUP,),
    )
    return [str(r[0] or "").strip() for r in rows]


def sender_ip_entries(source_db) -> list[tuple[str, str | None]]:
    rows = source_db.query("SELECT source, comment FROM greylisting_whitelist WHERE disabled = 0 ORDER BY id")
    return [(str(s or ""), c) for s, c in rows]


# --- writing apd's tables


def migrate(source_db, greylisting, out: Callable[[str], None] = print) -> None:
    existing = {(s.account.lower(), s.sender.lower()) for s in greylisting.list_settings()}
    if global_policy_on(source_db):
        if (ANYONE, ANYONE) in existing:
            out("[SKIP] Global greylisting setting exists, kept.")
        else:
            greylisting.set_setting(ANYONE, 0, ANYONE, 0, True)
            out("+ Enabled global greylisting.")
    for member in exempt_members(source_db):
        setting = member_setting(member)
        if isinstance(setting, str):
            out(setting)
        elif (setting.account.lower(), ANYONE) in existing:
            out(f"[SKIP] Greylisting setting of {escape_controls(setting.account)} exists, kept.")
        else:
            greylisting.set_setting(setting.account, setting.priority, ANYONE, 0, False)
            existing.add((setting.account.lower(), ANYONE))
            out(f"+ Disabled greylisting for {escape_controls(setting.account)}.")
    for source, comment in sender_ip_entries(source_db):
        entry = whitelist_entry(source, comment)
        if entry is None:
            continue
        if isinstance(entry, str):
            out(entry)
        elif greylisting.add_whitelist(ANYONE, entry.sender, entry.comment):
            out(f"+ Whitelisted {entry.sender} for everyone.")
        else:
            out(f"[SKIP] Whitelist of {entry.sender} exists, kept.")


def main(argv: Sequence[str] | None = None) -> int:
    return run_migration(
        "apd-migrate-cluebringer-greylisting",
        __doc__.split("\n\n")[0],
        argv,
        lambda source_db, store: migrate(source_db, store.greylisting),
    )


if __name__ == "__main__":
    sys.exit(main())
