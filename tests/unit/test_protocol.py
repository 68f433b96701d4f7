"""The policy protocol (protocol.md §1-§3, DIFFERENCES.md 1-5): golden files plus table tests.

Each ``tests/data/protocol/NAME.req`` is the byte stream one client sends on one connection;
``NAME.ref`` is what apd makes of it: per request the reply, then the attributes as parsed
(derived keys included); ``closed: ...`` when apd drops the connection. Every golden file
is fed once whole and once one byte at a time, and both must give the ``.ref``.
Regenerate after a deliberate change with ``APD_UPDATE_GOLDEN=1 pytest tests/unit/test_protocol.py``
and review the diff.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from apd import checks as registry
from apd import replies
from apd.policy import Policy
from apd.protocol import (
    MAX_ATTRIBUTES,
    MAX_LINE_BYTES,
    MAX_REQUEST_BYTES,
    PolicyRequest,
    ProtocolError,
    RequestReader,
    format_reply,
    lacks_protocol_state,
)
from apd.server import Connection
from apd.settings import defaults
from apd.worker import answer

DATA = Path(__file__).resolve().parents[1] / "data" / "protocol"
GOLDEN = sorted(p.stem for p in DATA.glob("*.req"))


def golden_policy() -> Policy:
    settings = defaults().replace(plugins=["reject_null_sender"], LOG_SMTP_SESSIONS=False)
    planned, _ = registry.plan(settings)
    return Policy(registry.instantiate(planned, settings, None), settings, None)


def transcript(chunks: list[bytes], policy: Policy) -> str:
    """What a client sees, through the worker's own connection code (server.Connection, worker.answer)
    on a socketpair: the replies it reads, each with the request as parsed, and why apd closed."""
    ours, theirs = socket.socketpair()
    conn = Connection(ours, ("golden", 0), RequestReader(), 0.0, 30.0)
    answered: list[PolicyRequest] = []

    def reply(request: PolicyRequest) -> str | None:
        action = answer(policy, None, request, 0.0)
        if action is not None:
            answered.append(request)
        return action

    drop = None
    for chunk in chunks:
        theirs.sendall(chunk)
        drop = conn.receive(0.0)
        while drop is None and conn.can_answer():
            drop = conn.answer_pending(reply, 0.0)
        if drop is not None:
            break
    if drop is None:
        drop = conn.send(0.0)  # the replies owed before a breach have gone: now the close
    received = read_available(theirs)
    in_request = conn.reader.in_request
    ours.close()
    theirs.close()
    replies = received.split(b"\n\n")
    assert replies.pop() == b"" and len(replies) == len(answered)
    out: list[str] = []
    for line, request in zip(replies, answered):
        out.append(line.decode("utf-8"))
        out += [f"    {name}={value}" for name, value in sorted(request.attrs.items())]
    if drop is not None:
        out.append(f"closed: {drop.reason}: {drop.detail}")
    elif in_request:
        out.append("(unfinished request)")
    return "\n".join(out) + "\n"


def read_available(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("name", GOLDEN)
def test_golden(name: str) -> None:
    data = (DATA / f"{name}.req").read_bytes()
    ref = DATA / f"{name}.ref"
    policy = golden_policy()
    whole = transcript([data], policy)
    if os.environ.get("APD_UPDATE_GOLDEN"):
        ref.write_text(whole, encoding="utf-8")
    assert whole == ref.read_text(encoding="utf-8")
    byte_by_byte = transcript([data[i : i + 1] for i in range(len(data))], policy)
    assert byte_by_byte == whole


def test_golden_files_come_in_pairs() -> None:
    assert len(GOLDEN) >= 10
    assert {p.stem for p in DATA.glob("*.ref")} == set(GOLDEN)


# --- framing


def request_bytes(**attrs: str) -> bytes:
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


RCPT = request_bytes(
    protocol_state="RCPT", client_address="192.0.2.1", sender="a@example.net", recipient="b@example.com"
)


@pytest.mark.parametrize("split", range(1, len(RCPT)))
def test_split_at_every_byte_position(split: int) -> None:
    reader = RequestReader()
    assert reader.feed(RCPT[:split]) == []
    assert reader.in_request
    (request,) = reader.feed(RCPT[split:])
    assert request.recipient == "b@example.com"
    assert request.sender == "a@example.net"
    assert not reader.in_request


def test_one_byte_at_a_time_many_requests() -> None:
    reader = RequestReader()
    stream = RCPT * 5 + RCPT.replace(b"\n", b"\r\n")
    got = [r for i in range(len(stream)) for r in reader.feed(stream[i : i + 1])]
    assert len(got) == 6
    assert {r.recipient for r in got} == {"b@example.com"}


def test_pipelined_requests_in_one_read_keep_their_order() -> None:
    stream = b"".join(
        request_bytes(protocol_state="RCPT", recipient=f"r{i}@example.com", client_address="192.0.2.1")
        for i in range(20)
    )
    requests = RequestReader().feed(stream)
    assert [r.recipient for r in requests] == [f"r{i}@example.com" for i in range(20)]


def test_crlf_lines_and_mixed_endings() -> None:
    stream = b"protocol_state=RCPT\r\nsender=A@B.COM\nrecipient=c@d.com\r\n\r\n"
    (request,) = RequestReader().feed(stream)
    assert request.attrs["protocol_state"] == "RCPT"
    assert request.sender == "a@b.com"
    assert request.recipient == "c@d.com"


def test_only_a_final_cr_is_removed() -> None:
    (request,) = RequestReader().feed(b"protocol_state=RCPT\nhelo_name=a\rb\r\n\n")
    assert request.attrs["helo_name"] == "a\rb"


def test_fresh_dictionary_per_request() -> None:
    reader = RequestReader()
    first, second = reader.feed(
        request_bytes(protocol_state="RCPT", sasl_username="u@example.com", helo_name="h")
        + request_bytes(protocol_state="RCPT")
    )
    assert first.sasl_username == "u@example.com"
    assert second.attrs == {"protocol_state": "RCPT"}
    assert first.attrs is not second.attrs


def test_unknown_attributes_dropped_names_are_case_sensitive() -> None:
    (request,) = RequestReader().feed(b"protocol_state=RCPT\nfoo=bar\nSender=x@y.com\nRECIPIENT=z@y.com\nnoequals\n\n")
    assert request.attrs == {"protocol_state": "RCPT"}


def test_every_postfix_attribute_is_kept() -> None:
    names = (
        "request protocol_state protocol_name helo_name queue_id sender recipient recipient_count client_address "
        "client_name reverse_client_name instance sasl_method sasl_username sasl_sender size ccert_subject "
        "ccert_issuer ccert_fingerprint encryption_protocol encryption_cipher encryption_keysize etrn_domain stress "
        "ccert_pubkey_fingerprint client_port policy_context server_address server_port compatibility_level "
        "mail_version"
    ).split()
    (request,) = RequestReader().feed("".join(f"{n}=\n" for n in names).encode() + b"\n")
    assert set(names) <= set(request.attrs)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("sender", "Foo.Bar@Example.COM", "foo.bar@example.com"),
        ("recipient", "Foo@Example.COM", "foo@example.com"),
        ("sasl_username", "Foo@Example.COM", "foo@example.com"),
        ("reverse_client_name", "MX.Example.COM", "mx.example.com"),
        ("client_name", "MX.Example.COM", "MX.Example.COM"),
        ("helo_name", "MX.Example.COM", "MX.Example.COM"),
        ("sasl_sender", "Foo@Example.COM", "Foo@Example.COM"),
        ("instance", "AbC.1", "AbC.1"),
        ("protocol_state", "rcpt", "rcpt"),
    ],
)
def test_lowercasing_only_of_four_attributes(name: str, value: str, expected: str) -> None:
    (request,) = RequestReader().feed(f"protocol_state=RCPT\n{name}={value}\n\n".encode())
    assert request.attrs[name] == expected


def test_protocol_state_property_is_uppercased_for_the_state_filter() -> None:
    (request,) = RequestReader().feed(b"protocol_state=end-of-message\n\n")
    assert request.protocol_state == "END-OF-MESSAGE"


def test_value_split_at_first_equals_sign() -> None:
    (request,) = RequestReader().feed(b"protocol_state=RCPT\nccert_subject=CN=a=b\n\n")
    assert request.attrs["ccert_subject"] == "CN=a=b"


def test_last_duplicate_wins() -> None:
    (request,) = RequestReader().feed(b"protocol_state=RCPT\nsender=a@b.com\nsender=c@d.com\n\n")
    assert request.sender == "c@d.com"
    assert request.sender_domain == "d.com"


def test_non_utf8_value_is_tolerated_and_connection_stays_usable() -> None:
    reader = RequestReader()
    (bad,) = reader.feed(b"protocol_state=RCPT\nhelo_name=\xff\xfe\x80\nsender=a@b.com\n\n")
    assert bad.attrs["helo_name"] == "\ufffd\ufffd\ufffd"
    assert bad.sender == "a@b.com"
    (good,) = reader.feed(RCPT)
    assert good.recipient == "b@example.com"


def test_utf8_split_between_reads_is_decoded_whole() -> None:
    reader = RequestReader()
    data = "protocol_state=RCPT\nhelo_name=café\n\n".encode()
    cut = data.index(b"\xa9")  # inside the two bytes of é
    assert reader.feed(data[:cut]) == []
    (request,) = reader.feed(data[cut:])
    assert request.attrs["helo_name"] == "café"


# --- derived keys


@pytest.mark.parametrize(
    "attrs, expected",
    [
        (
            {"sender": "user+ext@example.com"},
            {"sender_domain": "example.com", "sender_without_ext": "user@example.com"},
        ),
        ({"recipient": "a+b+c@x.example"}, {"recipient_domain": "x.example", "recipient_without_ext": "a@x.example"}),
        ({"sender": ""}, {"sender_domain": "", "sender_without_ext": ""}),
        ({"recipient": "nodomain"}, {"recipient_domain": "nodomain", "recipient_without_ext": "nodomain"}),
        ({"sasl_username": "u+x@example.com"}, {"sasl_username_domain": "example.com"}),
        ({"sender": "a@b@c.com"}, {"sender_domain": "b@c.com"}),
    ],
)
def test_derived_keys(attrs: dict, expected: dict) -> None:
    request = PolicyRequest.build({"protocol_state": "RCPT", **attrs})
    for key, value in expected.items():
        assert request.attrs[key] == value


def test_sasl_username_is_never_stripped() -> None:
    request = PolicyRequest.build({"sasl_username": "u+x@example.com"})
    assert "sasl_username_without_ext" not in request.attrs


def test_derived_keys_absent_when_attribute_absent() -> None:
    request = PolicyRequest.build({"protocol_state": "RCPT"})
    assert request.attrs == {"protocol_state": "RCPT"}
    assert request.sender_without_ext == ""


@pytest.mark.parametrize(
    "delimiters, address, stripped",
    [
        (("+",), "a+b-c@d.com", "a@d.com"),
        (("-", "+"), "a+b-c@d.com", "a+b@d.com"),
        (("+", "-"), "a+b-c@d.com", "a@d.com"),
        (("-",), "a+b@d.com", "a+b@d.com"),
        (("-", "+"), "a-b-c@d.com", "a@d.com"),
        ((), "a+b@d.com", "a+b@d.com"),
    ],
)
def test_recipient_delimiters_are_tried_in_list_order(delimiters, address, stripped) -> None:
    (request,) = RequestReader(delimiters=delimiters).feed(f"protocol_state=RCPT\nrecipient={address}\n\n".encode())
    assert request.recipient_without_ext == stripped
    assert request.recipient == address


# --- invalid addresses (DIFFERENCES.md 3)


@pytest.mark.parametrize(
    "lines, reply",
    [
        ("sender=foo", "DUNNO Error: Invalid sender address: foo"),
        ("recipient=Bob@LocalHost", "DUNNO Error: Invalid recipient address: bob@localhost"),
        ("sasl_username=john", "DUNNO Error: Invalid sasl_username address: john"),
        ("recipient=a@b.c\nsender=x", "DUNNO Error: Invalid recipient address: a@b.c"),
        ("sender=x\nrecipient=a@b.c", "DUNNO Error: Invalid sender address: x"),
        ("sender=a b@c.com", "DUNNO Error: Invalid sender address: a b@c.com"),
        ("sender=", None),
        ("sender=user@example.com>", None),
    ],
)
def test_invalid_address_reply(lines: str, reply: str | None) -> None:
    (request,) = RequestReader().feed(f"protocol_state=RCPT\n{lines}\n\n".encode())
    assert request.invalid_reply == reply


def test_invalid_address_gets_exactly_one_reply_and_runs_no_check() -> None:
    class Boom:
        name, states, priority = "boom", frozenset({"RCPT"}), 0

        def check(self, request, ctx):
            raise AssertionError("no check may run for an invalid address")

    settings = defaults()
    policy = Policy([Boom()], settings, None)
    reader = RequestReader()
    stream = b"protocol_state=RCPT\nsender=bad\nrecipient=also-bad\nsasl_username=john\n\n" + RCPT
    first, second = reader.feed(stream)
    assert policy.decide(first).action == "DUNNO Error: Invalid sender address: bad"
    assert second.invalid_reply is None
    replies_sent = format_reply(policy.decide(first).action)
    assert replies_sent.count(b"action=") == 1


# --- bounds (DIFFERENCES.md 5)


def test_line_at_the_bound_is_accepted_and_one_byte_more_is_not() -> None:
    value_room = MAX_LINE_BYTES - len("helo_name=")
    ok = f"protocol_state=RCPT\nhelo_name={'x' * value_room}\n\n".encode()
    (request,) = RequestReader().feed(ok)
    assert len(request.attrs["helo_name"]) == value_room
    crlf = ok.replace(b"\n", b"\r\n")
    reader = RequestReader()
    assert len([r for i in range(0, len(crlf), 7) for r in reader.feed(crlf[i : i + 7])]) == 1
    reader = RequestReader()
    assert reader.feed(f"protocol_state=RCPT\nhelo_name={'x' * (value_room + 1)}\n\n".encode()) == []
    assert isinstance(reader.error, ProtocolError)


def test_unterminated_long_line_is_refused_before_its_end_arrives() -> None:
    reader = RequestReader()
    reader.feed(b"helo_name=")
    assert reader.error is None
    reader.feed(b"x" * MAX_LINE_BYTES)
    assert reader.error is not None
    with pytest.raises(ProtocolError):
        reader.feed(b"\n\n")


def test_attribute_count_bound() -> None:
    at_bound = b"protocol_state=RCPT\n" + b"foo=bar\n" * (MAX_ATTRIBUTES - 1) + b"\n"
    assert len(RequestReader().feed(at_bound)) == 1
    reader = RequestReader()
    assert reader.feed(b"protocol_state=RCPT\n" + b"foo=bar\n" * MAX_ATTRIBUTES + b"\n") == []
    assert "attribute" in str(reader.error)


def test_request_size_bound() -> None:
    line = b"helo_name=" + b"x" * 1000 + b"\n"
    count = MAX_REQUEST_BYTES // len(line)
    reader = RequestReader()
    assert len(reader.feed(line * count + b"\n")) == 1
    reader = RequestReader()
    assert reader.feed(line * (count + 1) + b"\n") == []
    assert "larger" in str(reader.error)


def test_requests_before_a_breach_are_still_returned() -> None:
    reader = RequestReader()
    got = reader.feed(RCPT + RCPT + b"helo_name=" + b"x" * (MAX_LINE_BYTES + 10) + b"\n\n" + RCPT)
    assert len(got) == 2
    assert reader.error is not None
    with pytest.raises(ProtocolError):
        reader.feed(RCPT)


def test_bounds_count_per_request_not_per_connection() -> None:
    reader = RequestReader()
    one = b"protocol_state=RCPT\n" + b"foo=bar\n" * (MAX_ATTRIBUTES - 1) + b"\n"
    assert len(reader.feed(one * 10)) == 10
    assert reader.error is None


# --- replies


def test_format_reply() -> None:
    assert format_reply("DUNNO") == b"action=DUNNO\n\n"
    assert format_reply("REJECT Not authorized") == b"action=REJECT Not authorized\n\n"
    assert format_reply("REJECT a\nb\r") == b"action=REJECT a b \n\n"
    assert format_reply("REJECT é") == "action=REJECT é\n\n".encode()


def test_empty_request_is_dunno_even_without_plugins() -> None:
    policy = Policy([], defaults(), None)
    (empty,) = RequestReader().feed(b"\n")
    assert empty.empty
    assert not lacks_protocol_state(empty)
    assert policy.decide(empty).action == replies.DUNNO


def test_no_enabled_plugins() -> None:
    policy = Policy([], defaults(), None)
    (request,) = RequestReader().feed(RCPT)
    assert policy.decide(request).action == "DUNNO No enabled plugins"


def test_missing_protocol_state_closes_without_reply() -> None:
    (request,) = RequestReader().feed(b"sender=a@b.com\n\n")
    assert lacks_protocol_state(request)
    (invalid,) = RequestReader().feed(b"sender=bad\n\n")
    assert not lacks_protocol_state(invalid)  # the invalid-address reply still goes out
