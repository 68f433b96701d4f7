"""Run a real ``apd`` subprocess with a settings file written for the test."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers.policy_client import PolicyClient, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def settings_text(values: dict[str, Any]) -> str:
    lines = ["from libs.default_settings import *"]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


class ApdProcess:
    """``with ApdProcess(tmp_path, plugins=[...]) as apd: apd.client().ask(...)``"""

    command_prefix: tuple[str, ...] = ()  # run apd through a wrapper (e.g. tests/helpers/postfix.py's hostname wrapper)

    def __init__(self, workdir: Path, **settings: Any):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        settings.setdefault("listen_address", "127.0.0.1")
        settings.setdefault("listen_port", free_port())
        settings.setdefault("workers", 2)
        settings.setdefault("backend", "sqlite")
        settings.setdefault("sqlite_db_path", str(self.workdir / "apd.sqlite3"))
        settings.setdefault("log_level", "info")
        # Test dirs under a root-only temp folder: stay as the test user unless a test asks otherwise.
        settings.setdefault("run_as_user", pwd.getpwuid(os.getuid()).pw_name)
        settings.setdefault("DNS_NAMESERVERS", ["127.0.0.1:9"])  # never the system resolver
        self.settings = settings
        self.host = settings["listen_address"].split(",")[0].strip()
        self.port = int(settings["listen_port"])
        self.settings_path = self.workdir / "settings.py"
        self.log_path = self.workdir / "apd.log"
        self.proc: subprocess.Popen | None = None
        self.write_settings()

    def write_settings(self, **changes: Any) -> None:
        self.settings.update(changes)
        self.settings_path.write_text(settings_text(self.settings))
        os.chmod(self.workdir, 0o755)
        os.chmod(self.settings_path, 0o644)

    def start(self, wait: bool = True) -> "ApdProcess":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command_prefix, sys.executable, "-m", "apd", "-c", str(self.settings_path), "--log-to", "stderr"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.workdir),
        )
        if wait:
            try:
                wait_for_port(self.host, self.port)
                self.wait_answering()
            except (TimeoutError, OSError):
                self.stop()
                raise RuntimeError(f"apd did not start; log:\n{self.log()}") from None
        return self

    def wait_answering(self, timeout: float = 15.0) -> None:
        """The port is bound before the workers run: wait until a worker answers (an empty request)."""
        with PolicyClient(self.host, self.port, timeout) as client:
            client.send_raw(b"\n")
            client.read_reply()

    def client(self, timeout: float = 10.0) -> PolicyClient:
        return PolicyClient(self.host, self.port, timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in log:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "ApdProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
