"""Control characters of untrusted text made visible before it reaches a log line.

A client chooses its helo name, sender, recipient, ...: a newline in one of them would start a
line of its own in the log, one that looks written by apd. Every control character (C0, DEL, C1)
therefore becomes ``\\xNN``; anything else is kept.

The check runs on every decision line, so the common case (ASCII, nothing to replace) is one
bytes.translate in C: ~0.35 us for a 330-character line, where str.isprintable takes ~0.65 us
(a Unicode lookup per character) and a regex search ~1.5 us.
"""

from __future__ import annotations

import re
import traceback
from types import TracebackType

# C0, DEL, C1, and the Unicode line and paragraph separators (str.splitlines and some log
# viewers break lines there too)
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _hex(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with each control character written as ``\\xNN`` (a newline as ``\\x0a``)."""
    if text.isascii() and not text.encode("ascii").translate(None, _PRINTABLE_ASCII):
        return text  # nothing is left once the printable characters are dropped
    return _CONTROLS.sub(_hex, text)


def escaped_traceback(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> str:
    """The traceback ``logging`` would print, with each exception's own text escaped.

    The frames (file names, line numbers, source lines) are apd's and keep their lines; an
    exception's message may carry a client's value (``KeyError('<recipient>')``), so a newline
    in it becomes ``\\x0a`` instead of a line that looks like one of apd's log lines."""
    return "".join(_exception_lines(traceback.TracebackException(exc_type, exc, tb))).rstrip("\n")


def _exception_lines(te: traceback.TracebackException) -> list[str]:
    lines: list[str] = []
    if te.__cause__ is not None:
        lines += _exception_lines(te.__cause__)
        lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif te.__context__ is not None and not te.__suppress_context__:
        lines += _exception_lines(te.__context__)
        lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if te.stack:
        lines.append("Traceback (most recent call last):\n")
        lines += te.stack.format()
    lines.append(escape_controls("".join(te.format_exception_only()).rstrip("\n")) + "\n")
    return lines
