"""Operations files: the systemd unit and the Postfix snippet say what the daemon needs."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from apd import cli
from apd.settings import EX_CONFIG
from tests.helpers.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "apd.service"
SNIPPET = ROOT / "conf" / "postfix" / "main.cf.snippet"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


@pytest.mark.parametrize(
    "key, value",
    [
        ("Type", "notify"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("KillMode", "mixed"),
        ("KillSignal", "SIGTERM"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
    ],
)
def test_unit_service_keys(key: str, value: str) -> None:
    assert unit()["Service"][key] == value


def test_unit_restart_stops_on_config_errors() -> None:
    assert str(EX_CONFIG) in unit()["Service"]["RestartPreventExitStatus"].split()
    assert EX_CONFIG == 78


def test_unit_state_directory_is_writable() -> None:
    service = unit()["Service"]
    assert "/var/lib/apd" in service["ReadWritePaths"].split()
    assert service["StateDirectory"] == "apd"


def test_unit_keeps_what_dropping_privileges_needs() -> None:
    caps = set(unit()["Service"]["CapabilityBoundingSet"].split())
    assert {"CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"} <= caps
    assert "User" not in unit()["Service"]  # apd starts as root, binds, then drops to run_as_user itself
    assert int(unit()["Service"]["LimitNOFILE"]) >= 4096


def test_unit_exec_start_is_a_valid_apd_command_line() -> None:
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert argv[0] == "/usr/local/bin/apd"
    args = cli.parser().parse_args(argv[1:])
    assert args.log_to == "syslog"
    assert args.config == "/etc/apd/settings.py"
    assert not (args.check_config or args.print_config or args.init_db or args.print_sample)


def test_unit_install_section() -> None:
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    assert "network.target" in unit()["Unit"]["After"].split()


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    copy = tmp_path / "apd.service"  # verify checks that ExecStart exists; apd may not be installed there
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/apd", shutil.which("true") or "/bin/true"))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if "apd.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


# --- Postfix


def snippet_params() -> dict[str, str]:
    """main.cf syntax: 'name = value', continued on lines that start with whitespace."""
    params: dict[str, str] = {}
    name = None
    for line in SNIPPET.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name:
            params[name] += " " + line.strip()
            continue
        name, _, value = (part.strip() for part in line.partition("="))
        params[name] = value
    return {key: value.strip() for key, value in params.items()}


def test_postfix_snippet_asks_apd_at_rcpt_and_end_of_data_in_iredmail_order() -> None:
    params = snippet_params()
    assert params["smtpd_recipient_restrictions"].split() == [
        "reject_non_fqdn_recipient",
        "reject_unlisted_recipient",
        "check_policy_service",
        "inet:127.0.0.1:7777",
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "reject_unauth_destination",
    ]
    assert params["smtpd_end_of_data_restrictions"] == "check_policy_service inet:127.0.0.1:7777"


def test_postfix_accepts_the_snippet(tmp_path: Path) -> None:
    postconf = require_binary("postconf")
    (tmp_path / "main.cf").write_text(SNIPPET.read_text())
    (tmp_path / "master.cf").write_text("")
    result = subprocess.run(
        [postconf, "-c", str(tmp_path), "-n"], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    lines = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    assert lines["smtpd_end_of_data_restrictions"] == "check_policy_service inet:127.0.0.1:7777"
    assert "check_policy_service inet:127.0.0.1:7777" in lines["smtpd_recipient_restrictions"]


def test_the_shipped_postfix_snippet_has_no_finding_with_the_default_checks(capsys) -> None:
    """apd's own advice must pass its own Postfix check (without smtpd_relay_restrictions, an
    amavisd_wblist OK ended the RCPT list before reject_unauth_destination: an open relay)."""
    assert cli.main(["--check-postfix", str(SNIPPET)]) == 0
    assert "no finding" in capsys.readouterr().out
