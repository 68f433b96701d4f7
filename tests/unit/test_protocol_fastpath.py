"""The whole-request fast path of RequestReader must parse exactly like the line-by-line path.

Fed one byte at a time, a request goes through the line path (its end is not there yet when each
line completes); fed whole, it goes through the fast path. Both must give the same request.
"""

import pytest

from apd.protocol import MAX_ATTRIBUTES, ProtocolError, RequestReader

CASES = [
    b"protocol_state=RCPT\nsender=A@B.com\nrecipient=C+tag@D.com\nclient_address=192.0.2.1\n\n",
    b"protocol_state=RCPT\nsender=a@b.com\nfoo=bar\nnoequals\n=x\nsender=c@d.com\nhelo_name=H\n\n",
    b"protocol_state=RCPT\nccert_subject=CN=a=b\nsasl_username=U@X.ORG\nreverse_client_name=MX.Example\n\n",
    b"protocol_state=RCPT\nhelo_name=caf\xc3\xa9\xff\xfe\nclient_name=\xe2\x82\nsender=\n\n",
    b"protocol_state=RCPT\nsender=bad address\nrecipient=user@localhost\n\n",
    b"protocol_state=END-OF-MESSAGE\nsize=12\nrecipient_count=3\n\n",
    b"\n",  # an empty request
    b"protocol_state=RCPT\r\nsender=a@b.com\r\n\r\n",  # CRLF: left to the line path
    b"\nprotocol_state=RCPT\nsender=a@b.com\n\n",  # an empty request, then a request, in one read
    "".join(f"helo_name={i}\n" for i in range(MAX_ATTRIBUTES)).encode() + b"\n",  # at the bound
    b"Sender=X@Y.com\nrecipient=R@S.COM\nunknown=1\nREVERSE_CLIENT_NAME=Q\nrecipient=T@U.COM\n\n",  # names are exact
    b"protocol_state=RCPT\nsender=a@b.com\nmail_version=3.7\nfoo=\nbar=baz\nsasl_username=A@B.COM\n\n",
    b"protocol_state=RCPT\nsender=a=b@c.com\nrecipient==\nhelo_name=x\ry\n\n",  # '=' in values, CR inside
]


def one_byte_at_a_time(data: bytes) -> list:
    reader, requests = RequestReader(delimiters=("+", "-")), []
    for i in range(len(data)):
        requests += reader.feed(data[i : i + 1])
    return requests


@pytest.mark.parametrize("data", CASES)
def test_whole_request_parses_like_line_by_line(data: bytes) -> None:
    whole = RequestReader(delimiters=("+", "-")).feed(data)
    slow = one_byte_at_a_time(data)
    assert [(r.attrs, list(r.attrs), r.invalid_reply) for r in whole] == [
        (r.attrs, list(r.attrs), r.invalid_reply) for r in slow
    ]
    assert whole  # every case holds at least one complete request


def test_pipelined_requests_each_parsed_whole() -> None:
    stream = b"".join(CASES[:6]) * 3
    assert [r.attrs for r in RequestReader().feed(stream)] == [r.attrs for r in one_byte_at_a_time(stream)]


def test_too_many_attribute_lines_still_breach_the_bound() -> None:
    data = "".join(f"helo_name={i}\n" for i in range(MAX_ATTRIBUTES + 1)).encode() + b"\n"
    reader = RequestReader()
    assert reader.feed(data) == []
    assert isinstance(reader.error, ProtocolError)


def random_stream(rng) -> bytes:
    """Requests built from the pieces that steer the parser: known and unknown names, '=' in values,
    lines without '=', repeated names, CR, non-UTF-8 bytes, empty requests."""
    names = ["sender", "recipient", "sasl_username", "protocol_state", "helo_name", "Sender", "x", ""]
    values = ["a@b.com", "A+t@B.COM", "", "=", "a=b@c.d", "bad address", "\xe9", "user@localhost", "x\ry"]
    requests = []
    for _ in range(rng.randint(1, 4)):
        lines = []
        for _ in range(rng.randint(0, 8)):
            if rng.random() < 0.1:
                lines.append(rng.choice([b"noequals", b"\xff\xfe", b"junk"]))
            else:
                lines.append(f"{rng.choice(names)}={rng.choice(values)}".encode() + rng.choice([b"", b"", b"\xc3"]))
        crlf = rng.random() < 0.1
        end = b"\r\n" if crlf else b"\n"
        requests.append(b"".join(line + end for line in lines) + end)
    return b"".join(requests)


def test_random_requests_in_random_chunks_parse_like_line_by_line() -> None:
    import random

    rng = random.Random(20261125)  # fixed: a failure reproduces
    for _ in range(400):
        stream = random_stream(rng)
        cuts = sorted(rng.sample(range(1, len(stream)), min(3, len(stream) - 1))) if len(stream) > 1 else []
        reader, chunked = RequestReader(delimiters=("+", "-")), []
        for start, end in zip([0, *cuts], [*cuts, len(stream)]):
            chunked += reader.feed(stream[start:end])
        slow = one_byte_at_a_time(stream)
        whole = RequestReader(delimiters=("+", "-")).feed(stream)
        expected = [(r.attrs, list(r.attrs), r.invalid_reply) for r in slow]
        assert [(r.attrs, list(r.attrs), r.invalid_reply) for r in whole] == expected, stream
        assert [(r.attrs, list(r.attrs), r.invalid_reply) for r in chunked] == expected, stream
