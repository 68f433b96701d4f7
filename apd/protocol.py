"""Postfix policy delegation protocol: bytes -> PolicyRequest, action -> bytes. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat

from apd.address import is_email, strip_extension

# Attributes Postfix 2.1-3.12 may send (protocol.md §1.2); anything else is dropped.
KNOWN_ATTRIBUTES = frozenset(
    """request protocol_state protocol_name helo_name queue_id sender recipient recipient_count
    client_address client_name reverse_client_name instance sasl_method sasl_username sasl_sender
    size ccert_subject ccert_issuer ccert_fingerprint encryption_protocol encryption_cipher
    encryption_keysize etrn_domain stress ccert_pubkey_fingerprint client_port policy_context
    server_address server_port compatibility_level mail_version tls_sni""".split()
)
LOWERCASED = ("sender", "recipient", "sasl_username", "reverse_client_name")
ADDRESS_FIELDS = ("sender", "recipient", "sasl_username")
# (field, its domain key, its key without the address extension or None)
_DERIVED_KEYS = (
    ("sender", "sender_domain", "sender_without_ext"),
    ("recipient", "recipient_domain", "recipient_without_ext"),
    ("sasl_username", "sasl_username_domain", None),
)

MAX_LINE_BYTES = 4096
MAX_ATTRIBUTES = 100
MAX_REQUEST_BYTES = 64 * 1024


class ProtocolError(Exception):
    """A framing breach: log it, close the connection, send no reply (Postfix's contract)."""


class PolicyRequest:
    """One request: the attributes Postfix sent plus iRedAPD's derived keys.

    The values checks ask for are plain attributes, copied from ``attrs`` once: a property
    costs a Python call on every read, several per check and request.
    """

    __slots__ = (
        "attrs",
        "invalid_reply",
        "empty",
        "protocol_state",
        "client_address",
        "sender",
        "recipient",
        "sasl_username",
        "sender_domain",
        "recipient_domain",
        "sasl_username_domain",
        "sender_without_ext",
        "recipient_without_ext",
    )

    def __init__(self, attrs: dict[str, str], invalid_reply: str | None = None):
        get = attrs.get
        self.attrs = attrs
        self.invalid_reply = invalid_reply  # set when an address field fails the email test
        self.empty = not attrs
        self.protocol_state = get("protocol_state", "").upper()
        self.client_address = get("client_address", "")
        self.sender = get("sender", "")
        self.recipient = get("recipient", "")
        self.sasl_username = get("sasl_username", "")
        self.sender_domain = get("sender_domain", "")
        self.recipient_domain = get("recipient_domain", "")
        self.sasl_username_domain = get("sasl_username_domain", "")
        self.sender_without_ext = get("sender_without_ext", self.sender)
        self.recipient_without_ext = get("recipient_without_ext", self.recipient)

    @classmethod
    def build(cls, raw: dict[str, str], delimiters: tuple[str, ...] = ("+",)) -> "PolicyRequest":
        return cls.from_owned(dict(raw), delimiters)

    @classmethod
    def from_owned(cls, attrs: dict[str, str], delimiters: tuple[str, ...] = ("+",)) -> "PolicyRequest":
        """As ``build``, adding the derived keys to ``attrs`` itself: the parser's own dict needs no copy."""
        invalid = []
        for name, domain_key, without_ext_key in _DERIVED_KEYS:
            value = attrs.get(name)
            if value is None:
                continue
            _, at, domain = value.partition("@")
            attrs[domain_key] = domain if at else value  # address.domain_of, inlined: it runs twice per request
            if without_ext_key:
                # strip_extension only changes an address holding a delimiter: skip its email test otherwise
                attrs[without_ext_key] = strip_extension(value, delimiters) if _holds_any(value, delimiters) else value
            if value and not is_email(value):
                invalid.append(name)
        if not invalid:
            return cls(attrs)
        first = next(name for name in attrs if name in invalid)  # the first invalid field in line order
        return cls(attrs, f"DUNNO Error: Invalid {first} address: {attrs[first]}")

    def get(self, name: str, default: str = "") -> str:
        return self.attrs.get(name, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyRequest):
            return NotImplemented
        return (self.attrs, self.invalid_reply) == (other.attrs, other.invalid_reply)

    def __repr__(self) -> str:
        return f"PolicyRequest(attrs={self.attrs!r}, invalid_reply={self.invalid_reply!r})"


@dataclass
class RequestReader:
    """Incremental parser: feed it whatever recv() returned, get complete requests back.

    Requests may be split at any byte or pipelined several per read. Lines may end in
    CRLF. Values that are not UTF-8 are decoded with replacement characters.

    A framing breach (line, attribute count or request size over its bound) is recorded
    in ``error``: the requests completed before it are still returned, so the caller
    answers them and then closes the connection; a further ``feed`` raises the error.
    """

    delimiters: tuple[str, ...] = ("+",)
    max_line: int = MAX_LINE_BYTES
    max_attributes: int = MAX_ATTRIBUTES
    max_request: int = MAX_REQUEST_BYTES
    _buffer: bytearray = field(default_factory=bytearray)
    _current: dict[str, str] = field(default_factory=dict)
    _lines: int = 0
    _size: int = 0
    error: ProtocolError | None = None

    @property
    def in_request(self) -> bool:
        """True when part of a request has arrived but not its end."""
        return bool(self._buffer) or self._lines > 0

    def feed(self, data: bytes) -> list[PolicyRequest]:
        if self.error is not None:
            raise self.error
        buffer = self._buffer
        buffer += data
        done: list[PolicyRequest] = []
        start = 0
        try:
            while start < len(buffer):
                if not self._lines:  # at a request boundary: try the whole request in one go
                    end = buffer.find(b"\n\n", start)
                    if start < end <= start + self.max_line:
                        request = self._take_block(buffer[start:end])
                        if request is not None:
                            done.append(request)
                            start = end + 2
                            continue
                end = buffer.find(b"\n", start)
                if end < 0:
                    break
                line = bytes(buffer[start:end])
                start = end + 1
                request = self._take_line(line)
                if request is not None:
                    done.append(request)
            # An unfinished line may hold one byte more than the bound: its CR.
            if len(buffer) - start > self.max_line + 1:
                raise ProtocolError(f"line longer than {self.max_line} bytes")
        except ProtocolError as exc:
            self.error = exc
            buffer.clear()
            return done
        del buffer[:start]
        return done

    def _take_block(self, block: bytearray) -> PolicyRequest | None:
        """Fast path: a complete request that cannot breach a bound, split once instead of line by line.

        None (the line-by-line path takes over) for anything unusual: an empty request first,
        CR line ends, too many lines, a line without '=' or a repeated name. Decoding the block
        at once gives the same text as decoding each line, since a newline is never part of a
        UTF-8 sequence.
        """
        if block[0] == 10 or len(block) >= self.max_request:
            return None
        text = block.decode("utf-8", "replace")
        if "\r" in text:
            return None
        lines = text.split("\n")
        if len(lines) > self.max_attributes:
            return None
        try:
            attrs = dict(map(str.split, lines, repeat("="), repeat(1)))  # no Python frame per line
        except ValueError:  # a line without '=' (the line path drops it)
            return None
        if len(attrs) < len(lines):
            return None  # a repeated name: the line path keeps it where it last occurs
        if not attrs.keys() <= KNOWN_ATTRIBUTES:
            for name in attrs.keys() - KNOWN_ATTRIBUTES:
                del attrs[name]
        for name in LOWERCASED:
            value = attrs.get(name)
            if value:
                attrs[name] = value.lower()
        return PolicyRequest.from_owned(attrs, self.delimiters)

    def _take_line(self, line: bytes) -> PolicyRequest | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            raise ProtocolError(f"line longer than {self.max_line} bytes")
        if not line:
            request = PolicyRequest.from_owned(self._current, self.delimiters)
            self._current, self._lines, self._size = {}, 0, 0
            return request
        self._lines += 1
        self._size += len(line) + 1
        if self._lines > self.max_attributes:
            raise ProtocolError(f"more than {self.max_attributes} attribute lines in one request")
        if self._size > self.max_request:
            raise ProtocolError(f"request larger than {self.max_request} bytes")
        name, sep, value = line.decode("utf-8", "replace").partition("=")
        if not sep or name not in KNOWN_ATTRIBUTES:
            return None
        if name in LOWERCASED:
            value = value.lower()
        self._current.pop(name, None)  # keep line order of the last occurrence
        self._current[name] = value
        return None


def _holds_any(value: str, delimiters: tuple[str, ...]) -> bool:
    for delimiter in delimiters:
        if delimiter and delimiter in value:
            return True
    return False


def lacks_protocol_state(request: PolicyRequest) -> bool:
    """iRedAPD cannot run its plugins without ``protocol_state``: close without a reply (daemon.md §6)."""
    return not request.empty and request.invalid_reply is None and "protocol_state" not in request.attrs


def format_reply(action: str) -> bytes:
    """``action=<ACTION>\\n\\n``; newlines in the text could desynchronise Postfix, so they go."""
    if "\n" in action or "\r" in action:
        action = action.replace("\r", " ").replace("\n", " ")
    return b"action=" + action.encode("utf-8", "replace") + b"\n\n"
