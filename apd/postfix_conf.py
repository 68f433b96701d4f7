"""Postfix configuration text -> parameters, services and restriction lists (pure, no I/O).

Reads what ``apd --check-postfix`` judges: main.cf or ``postconf -n`` output (``name = value``, a line
starting with whitespace continues the one before, ``#`` lines are comments), master.cf or ``postconf -M``
output (a service per logical line, its ``-o name=value`` overrides), ``$name`` expansion with Postfix's
defaults for the parameters that matter here, and restriction lists split as smtpd splits them (commas or
whitespace; ``{ ... }`` groups kept whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

MAX_EXPANSION_DEPTH = 20  # a loop such as a = $b, b = $a ends here instead of recursing forever
MAX_CLASS_DEPTH = 10

POSTFIX_DEFAULT_ACTION = "451 4.3.5 Server configuration problem"

# Postfix's defaults (postconf -d, 3.x) of what the check reads; ``postconf -n`` leaves them out.
DEFAULTS = {
    "smtpd_client_restrictions": "",
    "smtpd_helo_restrictions": "",
    "smtpd_sender_restrictions": "",
    "smtpd_recipient_restrictions": "",
    "smtpd_data_restrictions": "",
    "smtpd_end_of_data_restrictions": "",
    "smtpd_etrn_restrictions": "",
    "smtpd_restriction_classes": "",
    "smtpd_delay_reject": "yes",
    "smtpd_policy_service_request_limit": "0",
    "smtpd_policy_service_default_action": POSTFIX_DEFAULT_ACTION,
    "compatibility_level": "0",
}
# Below compatibility level 1 the default is empty and relay control is left to the recipient list.
RELAY_DEFAULT = "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"

# Restrictions that take the next list element as their argument (a table, a server, a DNS list).
ARGUMENT_TAKERS = frozenset(
    {
        "reject_rbl_client",
        "reject_rhsbl_client",
        "reject_rhsbl_reverse_client",
        "reject_rhsbl_helo",
        "reject_rhsbl_sender",
        "reject_rhsbl_recipient",
        "permit_dnswl_client",
        "permit_rhswl_client",
    }
)


class PostfixConfError(ValueError):
    """Text that is not a Postfix configuration file; the message names the line."""


@dataclass(frozen=True)
class Restriction:
    """One element of a restriction list: ``check_policy_service inet:127.0.0.1:7777`` has name and argument;
    ``check_policy_service { inet:127.0.0.1:7777, default_action=DUNNO }`` also has options."""

    name: str
    argument: str = ""
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)

    def __str__(self) -> str:
        return f"{self.name} {self.argument}".strip()


@dataclass(frozen=True)
class Service:
    """A master.cf service: ``submission inet n - n - - smtpd -o smtpd_tls_security_level=encrypt``."""

    name: str
    type: str
    command: str
    overrides: tuple[tuple[str, str], ...]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each logical line: whitespace-led lines continue the previous one;
    empty lines and lines whose first non-blank character is ``#`` are skipped."""
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace() and lines:
            lines[-1] = (lines[-1][0], f"{lines[-1][1]} {stripped}")
        else:
            lines.append((number, stripped))
    return lines


def parse_main_cf(text: str, source: str = "main.cf") -> dict[str, str]:
    """Parameters of main.cf or ``postconf -n`` output, unexpanded; a later line wins, as in Postfix."""
    params: dict[str, str] = {}
    for number, line in logical_lines(text):
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not name or any(ch.isspace() for ch in name):
            raise PostfixConfError(f"{source}:{number}: expected 'name = value', got {line[:80]!r}")
        params[name] = value.strip()
    return params


def split_list(text: str, commas: bool = True) -> list[str]:
    """Elements separated by whitespace and (``commas``) commas; a ``{ ... }`` group (nested braces
    allowed) stays one element, braces included."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if depth == 0 and (ch.isspace() or (commas and ch == ",")):
            if current:
                items.append("".join(current))
                current = []
            continue
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        current.append(ch)
    if current:
        items.append("".join(current))
    return items


def unbrace(text: str) -> str:
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        return text[1:-1].strip()
    return text


def parse_master_cf(text: str, source: str = "master.cf") -> list[Service]:
    """Services of master.cf or ``postconf -M`` output with their ``-o`` overrides (unexpanded)."""
    services: list[Service] = []
    for number, line in logical_lines(text):
        fields = split_list(line, commas=False)  # -o smtpd_..._restrictions=a,b is one field
        if len(fields) < 8:
            raise PostfixConfError(f"{source}:{number}: expected at least 8 fields, got {line[:80]!r}")
        overrides: list[tuple[str, str]] = []
        args = fields[8:]
        for index, arg in enumerate(args):
            if arg == "-o" and index + 1 < len(args):
                setting = unbrace(args[index + 1])
            elif arg.startswith("-o") and len(arg) > 2:
                setting = unbrace(arg[2:])
            else:
                continue
            name, equals, value = setting.partition("=")
            if equals:
                overrides.append((name.strip(), unbrace(value)))
        services.append(Service(fields[0], fields[1], fields[7], tuple(overrides)))
    return services


def compat_level_below_1(level: str) -> bool:
    head = level.strip().split(".")[0]
    return not head.isdigit() or int(head) < 1


class Parameters:
    """Expanded parameter values: explicit ones first, then Postfix's defaults, then empty."""

    def __init__(self, explicit: Mapping[str, str]):
        self.explicit = dict(explicit)

    def overlaid(self, overrides: tuple[tuple[str, str], ...]) -> "Parameters":
        return Parameters({**self.explicit, **dict(overrides)})

    def raw(self, name: str) -> str:
        if name in self.explicit:
            return self.explicit[name]
        if name == "smtpd_relay_restrictions":
            return "" if compat_level_below_1(self.get("compatibility_level")) else RELAY_DEFAULT
        return DEFAULTS.get(name, "")

    def get(self, name: str) -> str:
        return expand(self.raw(name), self.raw)


def expand(value: str, lookup: Callable[[str], str], depth: int = 0) -> str:
    """Postfix's ``$name``, ``${name}``, ``$(name)``, ``${name?text}`` (text when name is not empty),
    ``${name:text}`` (text when it is empty) and ``$$``. Anything else after ``$`` stays as written."""
    if depth > MAX_EXPANSION_DEPTH:
        return ""
    if "$" not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "$" or i + 1 >= len(value):
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt in "{(":
            end = _matching(value, i + 1)
            if end < 0:
                out.append(value[i:])
                break
            out.append(_expand_braced(value[i + 2 : end], lookup, depth))
            i = end + 1
        elif nxt.isalnum() or nxt == "_":
            j = i + 1
            while j < len(value) and (value[j].isalnum() or value[j] == "_"):
                j += 1
            out.append(expand(lookup(value[i + 1 : j]), lookup, depth + 1))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _matching(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``start``, or -1."""
    opening = text[start]
    closing = "}" if opening == "{" else ")"
    depth = 0
    for index in range(start, len(text)):
        if text[index] == opening:
            depth += 1
        elif text[index] == closing:
            depth -= 1
            if depth == 0:
                return index
    return -1


def _expand_braced(inner: str, lookup: Callable[[str], str], depth: int) -> str:
    for operator in "?:":
        name, found, text = inner.partition(operator)
        if found and name.replace("_", "").isalnum():
            value = expand(lookup(name), lookup, depth + 1)
            wanted = bool(value) if operator == "?" else not value
            return expand(unbrace(text), lookup, depth + 1) if wanted else ""
    if inner.replace("_", "").isalnum():
        return expand(lookup(inner), lookup, depth + 1)
    return ""  # an expression this reader does not evaluate (e.g. ``{$x} <level {1} ? ...``)


def takes_argument(name: str) -> bool:
    return (name.startswith("check_") and name != "check_relay_domains") or name in ARGUMENT_TAKERS


def parse_restrictions(text: str) -> list[Restriction]:
    """A restriction list; an argument in braces gives the argument and its ``name=value`` options."""
    items = split_list(text)
    result: list[Restriction] = []
    index = 0
    while index < len(items):
        name = items[index]
        index += 1
        if not takes_argument(name) or index >= len(items):
            result.append(Restriction(name))
            continue
        argument = items[index]
        index += 1
        if not argument.startswith("{"):
            result.append(Restriction(name, argument))
            continue
        server = ""
        options: list[tuple[str, str]] = []
        for piece in unbrace(argument).split(","):
            key, equals, value = piece.partition("=")
            if equals:
                options.append((key.strip(), unbrace(value)))
            elif piece.strip() and not server:
                server = piece.split()[0]
        result.append(Restriction(name, server, tuple(options)))
    return result


def restriction_list(params: Parameters, name: str) -> list[Restriction]:
    """The list named ``name`` with restriction classes (``smtpd_restriction_classes``) replaced by their
    elements, as smtpd evaluates them."""
    classes = set(split_list(params.get("smtpd_restriction_classes")))
    return _inline_classes(parse_restrictions(params.get(name)), params, classes, 0)


def _inline_classes(items: list[Restriction], params: Parameters, classes: set[str], depth: int) -> list[Restriction]:
    result: list[Restriction] = []
    for item in items:
        if item.name in classes and not item.argument and depth < MAX_CLASS_DEPTH:
            inner = parse_restrictions(params.get(item.name))
            result.extend(_inline_classes(inner, params, classes, depth + 1))
        else:
            result.append(item)
    return result


def inet_endpoint(server: str) -> tuple[str, str] | None:
    """(host, port) of ``inet:HOST:PORT`` or ``inet:[IPv6]:PORT``; None for unix sockets and the rest."""
    if not server.startswith("inet:"):
        return None
    rest = server[len("inet:") :]
    if rest.startswith("["):
        host, bracket, port = rest[1:].partition("]")
        return (host, port[1:]) if bracket and port.startswith(":") else None
    host, colon, port = rest.rpartition(":")
    return (host, port) if colon and host else None
