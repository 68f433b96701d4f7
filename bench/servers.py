"""The servers under test, started as real subprocesses on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.apd_process import ApdProcess, free_port
from tests.helpers.policy_client import wait_for_port

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


class NullServer:
    """``bench/null_server.py`` in a subprocess."""

    def __init__(self, workers: int, parse: bool = False):
        self.workers = workers
        self.parse = parse
        self.port = free_port(HOST)
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> "NullServer":
        cmd = [sys.executable, "-m", "bench.null_server", "--host", HOST, "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)] + (["--parse"] if self.parse else [])
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            wait_for_port(HOST, self.port)
        except TimeoutError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ApdServer:
    """A real apd (master + workers) with a generated settings file in ``workdir``."""

    def __init__(self, workdir: Path, settings: dict[str, Any]):
        settings = dict(settings)
        settings.setdefault("listen_address", HOST)
        self.apd = ApdProcess(workdir, **settings)  # its log (one INFO line per decision) goes to a file
        self.database: Any = None  # bench/database.py's watch of the database apd uses, if any

    @property
    def address(self) -> tuple[str, int]:
        return self.apd.host, self.apd.port

    @property
    def pid(self) -> int:
        assert self.apd.proc is not None
        return self.apd.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.apd.log().splitlines()[-lines:])

    def __enter__(self) -> "ApdServer":
        self.apd.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.apd.stop()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (Linux)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(child) for child in children)
    return found


def peak_rss_kib(pid: int) -> dict[int, int]:
    """Peak resident set size (VmHWM, KiB) of ``pid`` and each of its descendants."""
    peaks = {}
    for each in process_tree(pid):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[each] = int(line.split()[1])
    return peaks


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid`` and its descendants (live ones)."""
    total = 0
    for each in process_tree(pid):
        try:
            stat = Path(f"/proc/{each}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def pss_kib(pid: int) -> dict[int, int]:
    """Proportional set size (KiB, /proc/<pid>/smaps_rollup) of ``pid`` and each descendant: a
    page shared by n processes counts 1/n in each, so the sum is what the server really holds."""
    found = {}
    for each in process_tree(pid):
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                found[each] = int(line.split()[1])
    return found
