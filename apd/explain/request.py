"""The request to explain, from policy attributes, from flags, or from a Postfix log line (pure)."""

from __future__ import annotations

import re
from typing import Iterable, Mapping

# What Postfix sends beside the attributes the flags name; explain fills them as smtpd would.
DEFAULTS = {
    "request": "smtpd_access_policy",
    "protocol_state": "RCPT",
    "protocol_name": "ESMTP",
    "client_address": "",
    "client_name": "",
    "reverse_client_name": "",
    "helo_name": "",
    "sender": "",
    "recipient": "",
    "recipient_count": "0",
    "size": "0",
    "sasl_method": "",
    "sasl_username": "",
}

FLAGS = {
    "sender": "sender",
    "recipient": "recipient",
    "client_address": "client_address",
    "client_name": "client_name",
    "helo": "helo_name",
    "sasl_username": "sasl_username",
    "state": "protocol_state",
    "size": "size",
    "recipient_count": "recipient_count",
}


class RequestError(ValueError):
    """The input does not describe a request; the text says what is wrong."""


def from_attribute_lines(lines: Iterable[str]) -> dict[str, str]:
    """``name=value`` lines as Postfix sends them; a blank line (or the end) ends the request."""
    attrs: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line:
            if attrs:
                break
            continue
        name, sep, value = line.partition("=")
        if not sep or not name:
            raise RequestError(f"line {number}: expected name=value, got {line[:80]!r}")
        attrs[name] = value
    if not attrs:
        raise RequestError("no request: give name=value lines, flags, or --from-log")
    return with_defaults(attrs)


def from_flags(values: Mapping[str, str | None]) -> dict[str, str]:
    return with_defaults(flag_attributes(values))


# smtpd's protocol states (SMTPD_POLICY_README), for --state
STATES = ("CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN")


def flag_attributes(values: Mapping[str, str | None]) -> dict[str, str]:
    """The attributes the given flags name (a flag left out: None), without defaults. A state
    or number smtpd could not send is refused (RequestError)."""
    attrs = {FLAGS[name]: value for name, value in values.items() if name in FLAGS and value is not None}
    if "sasl_username" in attrs and attrs["sasl_username"]:
        attrs.setdefault("sasl_method", "PLAIN")
    if "protocol_state" in attrs:
        attrs["protocol_state"] = attrs["protocol_state"].upper()
        if attrs["protocol_state"] not in STATES:
            raise RequestError(f"--state {attrs['protocol_state'][:40]!r}: not one of {', '.join(STATES)}")
    for name in ("size", "recipient_count"):
        if name in attrs and not (attrs[name].isascii() and attrs[name].isdigit()):
            raise RequestError(f"{flag_of(name)} {attrs[name][:40]!r}: not a whole number")
    return attrs


def flag_of(attribute: str) -> str:
    """The flag that gives ``attribute`` (``helo_name`` -> ``--helo``)."""
    name = next((flag for flag, attr in FLAGS.items() if attr == attribute), attribute)
    return "--" + name.replace("_", "-")


def with_defaults(attrs: Mapping[str, str]) -> dict[str, str]:
    full = dict(DEFAULTS)
    full.update(attrs)
    if not full["reverse_client_name"] and full["client_name"]:
        full["reverse_client_name"] = full["client_name"]
    return full


# smtpd: "NOQUEUE: reject: RCPT from mail.example.net[192.0.2.10]: 451 4.7.1 <u@example.com>: Recipient
# address rejected: ...; from=<s@example.net> to=<u@example.com> proto=ESMTP helo=<mail.example.net>"
_SMTPD = re.compile(
    r"(?:NOQUEUE|[0-9A-F]{6,}|[0-9B-Zb-z]{10,}): (?P<verb>[a-z]+): (?P<stage>[A-Z-]+) from "
    r"(?P<name>[^\[\s]*)\[(?P<address>[^\]]*)\](?::\d+)?: (?P<reply>.*?);"
    r"(?P<tail>(?: [a-z_]+=(?:<[^>]*>|\S+))+)\s*$"
)
_FIELD = re.compile(r" ([a-z_]+)=(<[^>]*>|\S+)")
_STATES = {"RCPT": "RCPT", "END-OF-MESSAGE": "END-OF-MESSAGE", "DATA": "DATA", "MAIL": "MAIL", "CONNECT": "CONNECT"}


# What smtpd's reject lines never carry, by protocol state (besides a missing helo=).
_NOT_LOGGED = {"END-OF-MESSAGE": ("size", "recipient_count"), "DATA": ("recipient_count",)}


def from_log_line(line: str) -> tuple[dict[str, str], str, list[str]]:
    """(request, the reply Postfix logged, the attributes the line does not give) from an smtpd
    reject/defer/hold/... line. What it does not give is left empty (0 for numbers), not guessed."""
    match = _SMTPD.search(line.strip())
    if match is None:
        raise RequestError(
            "not an smtpd line of the form '<queue id or NOQUEUE>: reject: RCPT from name[address]: "
            "<reply>; from=<...> to=<...> proto=... helo=<...>'"
        )
    fields = {name: value[1:-1] if value.startswith("<") else value for name, value in _FIELD.findall(match["tail"])}
    missing = [name for name in ("from", "to") if name not in fields]
    if missing:
        raise RequestError(f"the log line has no {' and no '.join(missing)}= field: cannot rebuild the request")
    name = match["name"]
    attrs = {
        "protocol_state": _STATES.get(match["stage"], match["stage"]),
        "protocol_name": fields.get("proto", "ESMTP"),
        "client_address": match["address"],
        "client_name": "unknown" if name == "unknown" else name,
        "reverse_client_name": name,
        "helo_name": fields.get("helo", ""),
        "sender": fields["from"],
        "recipient": fields["to"],
    }
    missing = [] if "helo" in fields else ["helo_name"]
    if "sasl_username" not in fields:
        missing.append("sasl_username")  # smtpd's reject lines do not say whether the client logged in
    else:
        attrs["sasl_username"] = fields["sasl_username"]
    missing += _NOT_LOGGED.get(attrs["protocol_state"], ())
    return with_defaults(attrs), match["reply"], missing
