"""PostgreSQL plans apd's key lookups through their indexes, also on small tables (issue 12):
the greylisting SPF whitelist read of every greylisting request, on iRedMail's schema."""

from __future__ import annotations

from tests.integration.greylisting_backends import open_backend

ACCOUNTS = ["u1@local1.test", "@local1.test", "@.", "@.local1.test", "@.test"]
SENDERS = ["x1@ip4.spf.test", "@ip4.spf.test", "@.", "@.ip4.spf.test", "@.spf.test", "@.test", "192.0.2.44"]


def test_spf_whitelist_lookup_uses_its_index(request, tmp_path):
    backend = open_backend(request, tmp_path, "pgsql:iredmail")
    try:
        db = backend.db
        rows = [("@.", f"100.64.{i // 256}.{i % 256}/32", "AUTO-UPDATE: big.test") for i in range(1000)]
        db.execute_many(
            "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment) VALUES (%s, %s, %s)", rows
        )
        db.execute("ANALYZE greylisting_whitelist_domain_spf")
        marks = ", ".join(["%s"] * len(ACCOUNTS)), ", ".join(["%s"] * len(SENDERS))
        plan = db.query(
            "EXPLAIN SELECT LOWER(sender), account FROM greylisting_whitelist_domain_spf"
            f" WHERE account IN ({marks[0]}) AND sender IN ({marks[1]})",
            [*ACCOUNTS, *SENDERS],
        )
        text = "\n".join(line for (line,) in plan)
        assert "idx_greylisting_whitelist_domain_spf_account_sender" in text, text
        assert "Seq Scan" not in text, text
    finally:
        backend.close()
