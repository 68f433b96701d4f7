"""apd --check-postfix on the e2e harness's own Postfix configuration: read as files and through postconf."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.apd_process import ROOT


def settings_for(postfix_server, workdir: Path) -> Path:
    """apd's settings as the harness runs it: its policy address, iRedMail's default plugin list."""
    host, port = postfix_server.policy
    path = workdir / "settings.py"
    path.write_text(f"listen_address = {host!r}\nlisten_port = {port}\nsqlite_db_path = {str(workdir / 'a.db')!r}\n")
    return path


def check_postfix(settings: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apd", "-c", str(settings), "--check-postfix", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
    )


def test_harness_files_give_no_finding(postfix_server, tmp_path):
    settings = settings_for(postfix_server, tmp_path)
    done = check_postfix(settings, str(postfix_server.config_dir / "main.cf"))
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    assert done.stdout == "apd: Postfix is wired to apd with no finding\n"


def test_harness_through_postconf_gives_no_finding(postfix_server, tmp_path):
    settings = settings_for(postfix_server, tmp_path)
    # no file: apd runs postconf -n and postconf -M itself (MAIL_CONFIG points them at the harness)
    done = check_postfix(settings, MAIL_CONFIG=str(postfix_server.config_dir))
    assert (done.returncode, done.stdout) == (0, "apd: Postfix is wired to apd with no finding\n"), done.stderr
    # postconf -c DIR -n piped in
    postconf = subprocess.run(
        [postfix_server.postconf_bin, "-c", str(postfix_server.config_dir), "-n"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "check_policy_service" in postconf.stdout
    done = check_postfix(settings, "-", stdin=postconf.stdout)
    assert (done.returncode, done.stdout) == (0, "apd: Postfix is wired to apd with no finding\n"), done.stderr


def test_harness_without_apd_in_end_of_data_is_found(postfix_server, tmp_path):
    """The same harness output with apd's END-OF-MESSAGE call taken out: throttle is reported."""
    settings = settings_for(postfix_server, tmp_path)
    postconf = subprocess.run(
        [postfix_server.postconf_bin, "-c", str(postfix_server.config_dir), "-n"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = "".join(
        line for line in postconf.stdout.splitlines(keepends=True) if not line.startswith("smtpd_end_of_data")
    )
    done = check_postfix(settings, "-", stdin=text)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("main.cf: throttle needs protocol state END-OF-MESSAGE"), done.stdout
