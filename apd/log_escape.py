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
