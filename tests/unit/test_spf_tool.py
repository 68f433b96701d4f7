"""Pure parts of admin/spf_to_greylist_whitelists.py."""

from pathlib import Path

import pytest

from admin.spf_to_greylist_whitelists import parse_args, valid_domains


@pytest.mark.parametrize(
    "names, valid, invalid",
    [
        (["Example.COM", "example.com", "b.example.org"], ["example.com", "b.example.org"], []),
        (["nodot", "bad_domain!", "", "x.y"], [], ["nodot", "bad_domain!", "", "x.y"]),
        (["_spf.google.com"], ["_spf.google.com"], []),
        (["@example.com", "192.0.2.1"], [], ["@example.com", "192.0.2.1"]),
        (["example.com>", "a.com;drop", "-a.com", "a..com"], [], ["example.com>", "a.com;drop", "-a.com", "a..com"]),
    ],
)
def test_valid_domains(names, valid, invalid):
    assert valid_domains(names) == (valid, invalid)


@pytest.mark.parametrize(
    "argv, debug, submit, domains",
    [
        ([], False, False, []),
        (["--debug", "a.example"], True, False, ["a.example"]),
        (["a.example", "--submit", "b.example"], False, True, ["a.example", "b.example"]),
    ],
)
def test_parse_args(argv, debug, submit, domains):
    args = parse_args(argv)
    assert (args.debug, args.submit, args.domains) == (debug, submit, domains)


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "apd-spf-to-greylist-whitelists"


def test_the_console_script_is_declared():
    assert f"{SCRIPT} = admin.spf_to_greylist_whitelists:main" in (ROOT / "setup.py").read_text()


def test_systemd_timer_runs_the_tool_every_30_minutes():
    timer = (ROOT / "systemd" / "apd-spf-whitelists.timer").read_text().splitlines()
    service = (ROOT / "systemd" / "apd-spf-whitelists.service").read_text().splitlines()
    assert "OnUnitActiveSec=30min" in timer
    assert "Type=oneshot" in service
    assert any(line.startswith("ExecStart=") and line.endswith("/" + SCRIPT) for line in service)


def test_cron_line_runs_the_tool_every_30_minutes():
    lines = [line for line in (ROOT / "conf" / "cron" / "apd").read_text().splitlines() if SCRIPT in line]
    assert len(lines) == 1
    minute, hour, dom, month, dow, user, *command = lines[0].split()
    assert (minute, hour, dom, month, dow, user) == ("*/30", "*", "*", "*", "*", "apd")
    assert any(part.endswith("/" + SCRIPT) for part in command)
