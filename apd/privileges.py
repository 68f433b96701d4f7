"""Becoming the account the workers run as, and asking that account, while still root, what it
will be able to read and write once privileges are dropped.

Started as root, apd drops to ``run_as_user`` before any worker runs; afterwards nothing may need
root's access. Whether the account can read a file or write a folder is asked of the account
itself (a forked child that becomes it, as a worker does): the answer then covers every
parent folder, ACLs, and the supplementary groups that dropping clears.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Callable


def become(user: pwd.struct_passwd) -> None:
    """Switch this process to ``user`` for good: no supplementary groups, its gid, its uid."""
    os.setgroups([])  # none kept from root (iRedAPD keeps them)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def ask_as(user: pwd.struct_passwd | None, question: Callable[[], str]) -> str:
    """``question()`` answered by ``user`` (a child process that becomes it); by this process
    when ``user`` is None. Only the answer's text comes back."""
    if user is None:
        return question()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no logging, no cleanup handlers, only the answer
        code = 0
        try:
            os.close(read_end)
            become(user)
            answer = question().encode("utf-8", "replace")
        except BaseException as exc:
            answer, code = f"could not ask as {user.pw_name}: {exc}".encode("utf-8", "replace"), 1
        try:
            while answer:
                answer = answer[os.write(write_end, answer) :]
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as reader:
        while chunk := reader.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace")


def why_unreadable(path: str) -> tuple[str, str]:
    """Asked as the account: ('', '') when it can read ``path`` (a file, or a folder it must list
    and enter), else (the folder or file that stops it, its mode and owner)."""
    blocked = first_closed_parent(path)
    if blocked:
        return blocked, f"cannot enter {blocked}: {describe_mode(blocked)}"
    try:
        if os.path.isdir(path):
            os.listdir(path)
            if not os.access(path, os.X_OK):
                raise PermissionError("cannot enter it")
        else:
            with open(path, "rb"):
                pass
    except FileNotFoundError:
        return "", ""  # nothing to read: reported where it matters
    except OSError:
        return path, f"cannot read it: {describe_mode(path)}"
    return "", ""


def why_unwritable(folder: str) -> tuple[str, str]:
    """Asked as the account: ('', '') when it can create files in ``folder``, else (the folder
    that stops it, its mode and owner)."""
    blocked = first_closed_parent(os.path.join(folder, "x"))
    if blocked:
        return blocked, f"cannot enter {blocked}: {describe_mode(blocked)}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return folder, f"cannot write in it: {describe_mode(folder)}"
    return "", ""


def first_closed_parent(path: str) -> str:
    """The first folder above ``path`` (from /) this process may not enter, or ''."""
    parts = os.path.abspath(path).split(os.sep)[1:-1]
    current = os.sep
    for part in parts:
        current = os.path.join(current, part)
        if not os.access(current, os.X_OK):
            return current
    return ""


def describe_mode(path: str) -> str:
    """'mode 0700, owner root:root', as far as it can be seen."""
    try:
        info = os.stat(path)
    except OSError:
        return "not visible"
    return f"mode {stat.S_IMODE(info.st_mode):04o}, owner {user_name(info.st_uid)}:{group_name(info.st_gid)}"


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
