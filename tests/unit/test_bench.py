"""The bench's code, briefly, so that it cannot rot: the load generator against the null server,
the choice of baselines and cells, and the table."""

from bench.loadgen import LoadResult, run_load
from bench.measure import CHURN, PERSISTENT, Cell, Measured, Row, payload
from bench.report import format_table
from bench.run import plan
from bench.scenarios import NULL, by_label, selected
from bench.servers import NullServer


def test_load_generator_counts_replies_from_null_server():
    with NullServer(workers=1) as server:
        persistent = run_load(server.address, 4, payload(), duration=0.5, warmup=0.1, processes=1)
        churn = run_load(server.address, 2, payload(), duration=0.3, warmup=0.1, churn=True, processes=1)
    assert persistent.errors == 0
    assert persistent.replies > 100
    assert persistent.first_reply == b"action=DUNNO"
    assert len(persistent.latencies_ns) == persistent.replies
    assert 0 < persistent.percentile(0.5) <= persistent.percentile(0.99)
    assert persistent.client_replies >= persistent.replies and persistent.client_cpu > 0
    assert churn.errors == 0
    assert churn.replies > 10


def test_a_named_scenario_brings_its_baseline_for_its_cells_only():
    scenarios = selected(["apd-core-nolog"])
    assert [s.label for s in scenarios] == [NULL, "apd-core-nolog"]
    table = (Cell(PERSISTENT, 1), Cell(PERSISTENT, 50), Cell(CHURN, 10))
    planned = {s.label: cells for s, cells in plan(scenarios, {"apd-core-nolog"}, table)}
    assert planned == {NULL: [Cell(PERSISTENT, 50)], "apd-core-nolog": [Cell(PERSISTENT, 50)]}


def test_table_shows_the_ratio_to_the_baseline():
    cell = Cell(PERSISTENT, 50)

    def measured(label: str, replies: int) -> Measured:
        result = LoadResult(replies=replies, seconds=1.0, probes=((0.0, 0.0), (1.0, replies * 20e-6)))
        result.latencies_ns.extend([1_000_000] * 10)
        return Measured(label, [Row(label, cell, result)])

    text = format_table([measured(NULL, 1000), measured("apd-core", 700)], {s: by_label(s) for s in (NULL, "apd-core")})
    apd_line = next(line for line in text.splitlines() if line.startswith("apd-core"))
    assert apd_line.split()[3:5] == ["700", "1.00"]  # req/s, p50 ms
    assert "0.70 x null" in apd_line
    assert "20.0" in apd_line  # server CPU microseconds per request


def test_parsing_null_server_reads_requests_and_answers_each():
    from bench.null_server import read_request

    assert read_request(b"a=1\nsender=x=y@z\nbroken") == {"a": "1", "sender": "x=y@z"}
    assert read_request(b"a=1\nb=2") == {"a": "1", "b": "2"}
    with NullServer(workers=1, parse=True) as server:
        result = run_load(server.address, 2, payload(), duration=0.3, warmup=0.1, processes=1)
    assert result.errors == 0 and result.replies > 10
    assert result.first_reply == b"action=DUNNO"


def test_verdict_reports_the_parsing_null_server_for_reference():
    from bench.report import verdict
    from bench.scenarios import NULL_PARSE

    cell = Cell(PERSISTENT, 50)

    def measured(label: str, replies: int) -> Measured:
        return Measured(label, [Row(label, cell, LoadResult(replies=replies, seconds=1.0))])

    text = verdict([measured(NULL, 1000), measured(NULL_PARSE, 600), measured("apd-core", 450)])
    assert "reaches 45% of the null server's throughput (goal >= 70%): NOT met" in text
    assert "null-parse reaches 60% of null, and apd-core 75% of null-parse" in text


def test_load_generator_cycles_a_mix_of_requests():
    """Each connection sends the requests of a mix in turn (a server here answers with the sender)."""
    import socket
    import threading

    from tests.helpers.policy_client import request_bytes

    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                break
            buffer += data
            while b"\n\n" in buffer:
                request, buffer = buffer.split(b"\n\n", 1)
                sender = dict(line.split("=", 1) for line in request.decode().splitlines())["sender"]
                seen.append(sender)
                conn.sendall(f"action={sender}\n\n".encode())
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    mix = [request_bytes(sender=f"s{i}@x.org") for i in range(3)]
    result = run_load(listener.getsockname(), 1, mix, duration=0.3, warmup=0.05, processes=1)
    thread.join(10)
    listener.close()
    assert result.errors == 0 and result.replies > 6
    assert seen[:6] == ["s0@x.org", "s1@x.org", "s2@x.org"] * 2


def test_throttle_scenario_counts_statements_per_request(tmp_path):
    from bench.throttle import sqlite_environment, statements_per_request

    scenario = by_label("throttle-sqlite")
    assert len(scenario.mix) == 64 and scenario.statements is not None
    with sqlite_environment(tmp_path) as extra:
        counted = statements_per_request({**scenario.settings, "backend": "sqlite", **extra}, rounds=2)
    per_request = float(counted.split()[0])
    assert 2 <= per_request <= 6, counted  # settings and alias lookups, then the counters
    assert counted.endswith("(SQLite trace callback)")


def test_iredmail_default_mix_shares_and_scenario():
    """A quarter END-OF-MESSAGE (throttle), the rest RCPT with every kind of case in it."""
    from bench.iredmail_default import MIX

    scenario = by_label("iredmail-default-mariadb")
    assert scenario.mix == MIX and scenario.statements is not None and scenario.environment is not None
    assert len(scenario.settings["plugins"]) == 8 and "throttle" in scenario.settings["plugins"]
    states = [r["protocol_state"] for r in MIX]
    assert states.count("END-OF-MESSAGE") == len(MIX) // 4 and states.count("RCPT") == 3 * len(MIX) // 4
    rcpts = [r for r in MIX if r["protocol_state"] == "RCPT"]
    assert any(r["sender"] == "" for r in rcpts)  # a bounce
    assert any(r["sasl_username"] and r["sasl_username"] != r["sender"] for r in rcpts)  # login mismatch
    assert any(r["recipient"].endswith("@alias1.test") for r in rcpts)  # through the alias domain
    assert {"sales@local1.test", "all@local1.test", "staff@local1.test", "team@local2.test"} <= {
        r["recipient"] for r in rcpts
    }
    assert len({(r["sender"], r["recipient"], r["client_address"]) for r in rcpts}) > len(rcpts) // 3


def test_iredmail_default_rows_fit_their_insert_statements():
    from bench.iredmail_default import COLUMNS, amavisd_rows, insert_sql, iredapd_rows, vmail_rows

    tables = {**vmail_rows(), **iredapd_rows(), **amavisd_rows(fill=50)}
    assert set(tables) == set(COLUMNS)
    for table, rows in tables.items():
        assert rows, table
        assert {len(row) for row in rows} == {insert_sql(table).count("%s")}, table
    assert insert_sql("wblist_rdns", "?") == "INSERT INTO wblist_rdns (rdns, wb) VALUES (?, ?)"
    mailaddr = amavisd_rows(fill=50)["mailaddr"]
    assert len({email for _, _, email in mailaddr}) == len(mailaddr)  # mailaddr.email is unique
    assert len(amavisd_rows()["wblist"]) > 10_000


def test_database_figures_per_request_leave_out_the_probe_itself():
    from bench.database import Snapshot, format_per_request, per_request

    before = Snapshot(1.0, 2.0, {"Questions": 100, "Com_select": 50, "Handler_read_key": 10})
    after = Snapshot(2.0, 2.5, {"Questions": 601, "Com_select": 450, "Handler_read_key": 1010})
    figures = per_request(before, after, 100)
    assert figures == {"db_us": 5000.0, "Questions": 5.0, "Com_select": 4.0, "Handler_read_key": 10.0}
    assert per_request(Snapshot(1.0), Snapshot(2.0), 100) == {}
    assert format_per_request(figures).startswith(
        "db cpu 5000 us/req, 5.00 statements (= round trips)/req: SELECT 4.00"
    )


def test_table_and_database_block_read_snapshots():
    from bench.database import Snapshot
    from bench.report import format_database

    cell = Cell(PERSISTENT, 50)
    probes = ((0.0, Snapshot(0.0, 0.0, {"Questions": 0})), (1.0, Snapshot(0.5, 0.25, {"Questions": 5001})))
    result = LoadResult(replies=1000, seconds=1.0, probes=probes)
    result.latencies_ns.extend([2_000_000] * 10)
    measured = Measured("iredmail-default-mariadb", [Row("iredmail-default-mariadb", cell, result)])
    text = format_table([measured], {"iredmail-default-mariadb": by_label("iredmail-default-mariadb")})
    assert "500.0" in text.splitlines()[1]  # apd: 0.5 CPU seconds for 1000 requests
    block = format_database([measured])
    assert "iredmail-default-mariadb persistent 50: db cpu 250 us/req, 5.00 statements" in block


def test_profile_counts_statements_per_check(tmp_path):
    """The per-check replay on SQLite: every statement is charged to the check that sent it."""
    from bench.profile import SESSIONS, format_profile, profile, shape
    from bench.throttle import MIX, sqlite_environment

    assert shape("select a from  t1 JOIN t2 on x where b in (select c from t3)") == "SELECT t1, t2, t3"
    assert shape("INSERT INTO smtp_sessions (a) VALUES (%s)") == "INSERT smtp_sessions"
    with sqlite_environment(tmp_path) as extra:
        settings = {"backend": "sqlite", "plugins": ["reject_null_sender", "throttle"], **extra}
        costs = {c.name: c for c in profile(settings, MIX[:8], rounds=1)}
    assert set(costs) == {"reject_null_sender", "throttle", SESSIONS}
    assert costs["reject_null_sender"].asked == 0  # a RCPT check: the mix is END-OF-MESSAGE
    assert costs["throttle"].asked == 8 and sum(costs["throttle"].statements.values()) >= 8
    assert costs[SESSIONS].statements["INSERT smtp_sessions"] == 8  # every END-OF-MESSAGE is logged
    text = format_profile(list(costs.values()), 8)
    assert "throttle" in text and "INSERT smtp_sessions 1.00" in text


def test_postgresql_figures_are_transactions_and_rows():
    from bench.database import Snapshot, format_per_request, per_request

    before = Snapshot(1.0, 2.0, {"xact_commit": 10, "xact_rollback": 0, "tup_returned": 0, "tup_fetched": 0})
    after = Snapshot(2.0, 2.1, {"xact_commit": 511, "xact_rollback": 0, "tup_returned": 900, "tup_fetched": 100})
    text = format_per_request(per_request(before, after, 100))
    assert text == (
        "db cpu 1000 us/req, 5.00 transactions (autocommit statements)/req; rows returned + fetched 10.0/req"
    )
    assert by_label("iredmail-default-pgsql").mix == by_label("iredmail-default-mariadb").mix
