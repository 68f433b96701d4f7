"""Render ``conf/settings.py.sample`` from the settings REGISTRY (``make conf``, ``apd --print-sample``)."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from apd.settings import REGISTRY

HEADER = """\
# apd settings: copy to /etc/apd/settings.py (or pass -c FILE) and uncomment what you change.
#
# The format is iRedAPD's settings.py: an existing iRedAPD settings file, including its
# first line `from libs.default_settings import *`, works unchanged. apd reads the file
# without running it: plain `NAME = value` assignments, `NAME[key] = value` on dicts
# (`PLUGIN_PRIORITIES['custom_x'] = 100`) and `NAME += [...]` on lists.
#
# Each commented line below shows the built-in default. Check a file with
# `apd --check-config -c FILE`.
#
# Generated from apd/settings.py by `make conf`; do not edit by hand.
"""


def literal(value: Any) -> str:
    """A Python literal the settings loader reads back to the same value (tuples as lists)."""
    if isinstance(value, tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def render() -> str:
    parts = [HEADER]
    for setting in REGISTRY:
        doc = textwrap.wrap(setting.doc, width=96) or [""]
        parts.append("\n".join(f"# {line}" for line in doc) + f"\n#{setting.name} = {literal(setting.default)}\n")
    return "\n".join(parts)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
