"""Postfix's tcp_table protocol (tcp_table(5)), the framing of the two SRS ports.

A request is one line, ``get <key>``; the reply is one line, ``200 <value>`` (found), ``500
<text>`` (not found) or ``400 <text>`` (try again later), of at most 4096 bytes with its newline.
Postfix writes ``%``, white space and other non-printing characters of the key as ``%XX``, and
reads a reply value the same way: keys are decoded here (iRedAPD did not, so such a key was
"not a valid email address") and reply texts encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from apd.protocol import ProtocolError

MAX_LINE = 4096  # bytes, newline included: tcp_table's bound, for requests and replies alike
FOUND, NOT_FOUND, TRY_AGAIN = "200", "500", "400"


@dataclass(frozen=True)
class Reply:
    code: str
    text: str = ""


class TableRequest:
    """One request line, without its line end."""

    __slots__ = ("line",)
    empty = False  # every line is a request (Connection asks this of policy requests)

    def __init__(self, line: str):
        self.line = line


class LineReader:
    """Incremental reader of request lines; the interface of protocol.RequestReader that
    server.Connection uses (``feed``, ``in_request``, ``error``)."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.delimiters: tuple[str, ...] = ()  # set by a worker's reload; not used here
        self.error: ProtocolError | None = None
        self._buffer = bytearray()

    @property
    def in_request(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[TableRequest]:
        if self.error is not None:
            raise self.error
        buffer = self._buffer
        buffer += data
        done: list[TableRequest] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end])
            start = end + 1
            if len(line) + 1 > self.max_line:
                self.error = ProtocolError(f"tcp_table line longer than {self.max_line} bytes")
                break
            done.append(TableRequest(line.rstrip(b"\r").decode("utf-8", "replace")))
        if self.error is None and len(buffer) - start >= self.max_line:
            self.error = ProtocolError(f"tcp_table line longer than {self.max_line} bytes")
        if self.error is not None:
            buffer.clear()
        else:
            del buffer[:start]
        return done


def requested_key(line: str) -> str | None:
    """The decoded key of a ``get <key>`` line, or None when the line is no such request."""
    if not line.startswith("get "):
        return None
    raw = line[4:].strip()
    return unquote_to_bytes(raw).decode("utf-8", "replace") if "%" in raw else raw


def encode_text(text: str) -> str:
    """``%XX`` for '%', white space, control and non-ASCII characters (their UTF-8 bytes)."""
    if text.isascii() and text.isprintable() and " " not in text and "%" not in text:
        return text
    out = []
    for byte in text.encode("utf-8"):
        out.append(chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}")
    return "".join(out)


def format_reply(code: str, text: str) -> bytes:
    """One reply line, its text encoded and cut so the line stays within MAX_LINE bytes
    (never inside a %XX escape)."""
    encoded = encode_text(text)
    room = MAX_LINE - len(code) - 2  # the space and the newline
    if len(encoded) > room:
        cut = room
        while cut > 0 and "%" in encoded[max(0, cut - 2) : cut]:
            cut -= 1
        encoded = encoded[:cut]
    return f"{code} {encoded}\n".encode("ascii")


def encode_reply(reply: Reply) -> bytes:
    return format_reply(reply.code, reply.text)
