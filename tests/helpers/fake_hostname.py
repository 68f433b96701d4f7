"""Run ``python -m MODULE ARGS...`` with ``socket.gethostname()`` answering a given name.

The last resort of ``tests/helpers/postfix.py`` for machines whose own name is not a mail domain and that may not
create a UTS namespace (an unprivileged container). Usage: ``python fake_hostname.py NAME python -m apd -c FILE``.
"""

from __future__ import annotations

import runpy
import socket
import sys


def main(argv: list[str]) -> None:
    name, _python, flag, module, *args = argv
    if flag != "-m":
        raise SystemExit(f"usage: {__file__} NAME PYTHON -m MODULE [ARGS...]")
    socket.gethostname = lambda: name  # read by reject_to_hostname when the check loads
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
