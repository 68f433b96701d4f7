"""What ``spf_to_greylist_whitelists`` reads and writes (schemas.md §1.5, §1.6; admin-tools.md §3).

``greylisting_whitelist_domains`` lists the domains whose mail servers are never greylisted;
``greylisting_whitelist_domain_spf`` holds their servers (IPs, networks, ``@domain`` from
``ptr``), one row per sender, ``account = '@.'``, ``comment = 'AUTO-UPDATE: <domain>'``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from apd.errors import StoreError
from apd.store.base import Database, in_list

SPF_TABLE = "greylisting_whitelist_domain_spf"
ANYONE = "@."

# Well-known large senders: their mail comes from pools of servers, so a greylisted message
# may be retried from another address and wait far longer than the block time. Seeded into a
# new database; admins edit the list with greylisting_admin --whitelist-domain / --remove-whitelist-domain.
DEFAULT_WHITELIST_DOMAINS = (
    "amazon.com",
    "amazonses.com",
    "aol.com",
    "apple.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "google.com",
    "gmail.com",
    "googlemail.com",
    "microsoft.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.co.jp",
    "ymail.com",
    "facebook.com",
    "facebookmail.com",
    "linkedin.com",
    "twitter.com",
    "x.com",
    "paypal.com",
    "ebay.com",
    "github.com",
    "gitlab.com",
    "salesforce.com",
    "zoho.com",
    "zendesk.com",
    "protonmail.com",
    "proton.me",
    "fastmail.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "sendgrid.net",
    "mailgun.org",
    "mailchimp.com",
    "mandrillapp.com",
    "sparkpostmail.com",
    "booking.com",
    "dropbox.com",
)


def auto_update_comment(domain: str) -> str:
    return f"AUTO-UPDATE: {domain}"


class GreylistingWhitelists:
    def __init__(self, db: Database):
        self.db = db

    # --- greylisting_whitelist_domains

    def domains(self) -> list[str]:
        rows = self.db.query("SELECT domain FROM greylisting_whitelist_domains ORDER BY domain")
        return [row[0] for row in rows]

    def add_domain(self, domain: str) -> None:
        """Insert one domain; raises DuplicateKey when it is listed already."""
        self.db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", (domain,))

    # --- greylisting_whitelist_domain_spf

    def spf_senders(self, domain: str) -> list[str]:
        rows = self.db.query(
            f"SELECT sender FROM {SPF_TABLE} WHERE comment = %s ORDER BY sender", (auto_update_comment(domain),)
        )
        return [row[0] for row in rows]

    def replace_spf_senders(self, domain: str, senders: Sequence[str]) -> None:
        """Swap the domain's AUTO-UPDATE rows for ``senders`` in one transaction, then forget
        the greylisting tracking of those clients and networks (exact ``client_address`` match).

        A sender already stored (under any comment) keeps its row, as in iRedAPD. The rows
        releases up to iRedAPD 2.0 wrote into ``greylisting_whitelists`` go as well.
        """
        comment = auto_update_comment(domain)
        insert = self.db.dialect.insert_ignore(SPF_TABLE, ("account", "sender", "comment"), ("account", "sender"))
        with self.db.transaction():
            self.db.execute(f"DELETE FROM {SPF_TABLE} WHERE comment = %s", (comment,))
            self.db.execute("DELETE FROM greylisting_whitelists WHERE comment = %s", (comment,))
            if senders:
                self.db.execute_many(insert, [(ANYONE, sender, comment) for sender in senders])
        # exact client_address, networks included (rows tracked per network match them)
        clients = [s for s in senders if not s.startswith("@")]
        for start in range(0, len(clients), 500):
            batch = clients[start : start + 500]
            self.db.execute(f"DELETE FROM greylisting_tracking WHERE client_address IN ({in_list(batch)})", batch)


# --- seeding a new database (apd --init-db and the first start of the SQLite store)


def whitelist_domains_table_exists(db: Database) -> bool:
    try:
        db.query("SELECT 1 FROM greylisting_whitelist_domains WHERE 1 = 0")
    except StoreError:
        return False
    return True


def seed_whitelist_domains(db: Database, domains: Iterable[str] = DEFAULT_WHITELIST_DOMAINS) -> int:
    """Insert the default domains that are missing; returns how many were inserted."""
    insert = db.dialect.insert_ignore("greylisting_whitelist_domains", ("domain",), ("domain",))
    count = "SELECT COUNT(*) FROM greylisting_whitelist_domains"
    before = db.query_one(count)[0]
    db.execute_many(insert, [(domain,) for domain in domains])
    return db.query_one(count)[0] - before  # rowcounts of an ignored insert differ by dialect


def create_tables_and_seed(db: Database, create_tables: Callable[[], None]) -> int:
    """Run ``create_tables``; when that created ``greylisting_whitelist_domains``, seed it.

    An existing table (an iRedAPD database, or one whose list an admin edited) is left alone.
    Returns the number of domains seeded.
    """
    new = not whitelist_domains_table_exists(db)
    create_tables()
    return seed_whitelist_domains(db) if new else 0
