"""Server processes that end with the test session, even when pytest itself is killed."""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
from typing import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, user: str | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: optionally become ``user``, then ask the kernel to send ``sig`` when
    the parent (the pytest process) exits. The order matters: a credential change clears
    the parent-death signal."""

    def preexec() -> None:
        if user is not None and os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig))

    return preexec
