"""Settings (settings.md): iRedAPD files load unchanged, bad values are named, unknown names get a hint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apd import cli
from apd import settings as st
from apd.sample import literal, render

ROOT = Path(__file__).resolve().parents[2]

# What iRedMail's installer leaves in /opt/iredapd/settings.py (settings.md §1-§2), plus the
# in-place edits the docs suggest.
IREDMAIL_SETTINGS = """\
############################################################
# DO NOT TOUCH BELOW LINE.
#
# Import default settings.
# You can always override default settings by placing custom settings in this
# file.
from libs.default_settings import *
############################################################

# Listen address and port.
listen_address = "127.0.0.1"
# Port for normal SMTP policy service.
listen_port = "7777"
# Ports used by SRS (Sender Rewriting Scheme) service.
srs_forward_port = "7778"
srs_reverse_port = "7779"

# Run as a low privileged user.
run_as_user = "iredapd"

# Path to pid file.
pid_file = '/var/run/iredapd.pid'

# Log level: info, debug.
log_level = "info"

# Backend used to query accounts: ldap, mysql, pgsql.
backend = "mysql"

# Enabled plugins.
plugins = ["reject_null_sender", "wblist_rdns", "reject_sender_login_mismatch", "greylisting", "throttle", "amavisd_wblist", "sql_alias_access_policy", "sql_ml_access_policy"]

# SRS (Sender Rewriting Scheme)
srs_secrets = ["FnLzXxAyDCsnowSqrQBdVamBfQzlyRM"]
srs_domain = "mx.example.com"

# For SQL backends
vmail_db_server = "127.0.0.1"
vmail_db_port = "3306"
vmail_db_name = "vmail"
vmail_db_user = "vmail"
vmail_db_password = "6DXvQfDOHIhUvZ0AUGDZMmZHOpxXDK"

# Amavisd database (required by plugin `amavisd_wblist`)
amavisd_db_server = "127.0.0.1"
amavisd_db_port = "3306"
amavisd_db_name = "amavisd"
amavisd_db_user = "amavisd"
amavisd_db_password = "5Qbq1mUcc8xkhATxHW4z"

# iRedAPD database
iredapd_db_server = "127.0.0.1"
iredapd_db_port = "3306"
iredapd_db_name = "iredapd"
iredapd_db_user = "iredapd"
iredapd_db_password = "B3k1HTKg47bEcpvlFQq8"

mlmmjadmin_api_auth_token = 'uU3aQT6OPvaX0e9dLqlovv1dJIRa4t'

SQL_DB_DRIVER = 'pymysql'
MYNETWORKS = ['192.168.1.10', '10.0.0.0/8', '172.16.*.*']
SYSLOG_SERVER = '/var/run/log'
PLUGIN_PRIORITIES['custom_x'] = 100
PLUGIN_PRIORITIES["greylisting"] = 85
plugins += ['reject_to_hostname']
plugins.append('custom_spam_trap')
ALLOWED_LOGIN_MISMATCH_SENDERS = ['user@example.com', 'example.org']
DNS_QUERY_TIMEOUT = 5
GREYLISTING_BLOCK_EXPIRE = 60 * 2
WBLIST_DISCARD_INSTEAD_OF_REJECT = True
CUSTOM_RELAY_DEFAULT_RELAY = 'smtp-amavis:[127.0.0.1]:10025'
SPAM_TRAP_ACCOUNTS = ['spam@example.com']
"""


def write(tmp_path: Path, text: str, name: str = "settings.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(text: str) -> list[str]:
    with pytest.raises(st.ConfigError) as err:
        st.parse(text, "settings.py")
    return err.value.problems


def test_iredmail_settings_file_loads_unchanged() -> None:
    s = st.parse(IREDMAIL_SETTINGS, "settings.py")
    assert s.listen_port == 7777 and s.srs_forward_port == 7778 and s.srs_reverse_port == 7779
    assert s.vmail_db_port == s.amavisd_db_port == s.iredapd_db_port == 3306
    assert s.backend == "mysql"
    assert s.run_as_user == "iredapd"
    assert s.plugins == (
        "reject_null_sender",
        "wblist_rdns",
        "reject_sender_login_mismatch",
        "greylisting",
        "throttle",
        "amavisd_wblist",
        "sql_alias_access_policy",
        "sql_ml_access_policy",
        "reject_to_hostname",
        "custom_spam_trap",
    )
    assert s.PLUGIN_PRIORITIES == {"custom_x": 100, "greylisting": 85}
    assert s.MYNETWORKS == ("192.168.1.10", "10.0.0.0/8", "172.16.*.*")
    assert s.SQL_DB_DRIVER == "pymysql"
    assert s.DNS_QUERY_TIMEOUT == 5.0
    assert s.GREYLISTING_BLOCK_EXPIRE == 120
    assert s.WBLIST_DISCARD_INSTEAD_OF_REJECT is True
    assert s.CUSTOM_RELAY_DEFAULT_RELAY == "smtp-amavis:[127.0.0.1]:10025"  # sample plugins' names pass through
    assert s.SPAM_TRAP_ACCOUNTS == ["spam@example.com"]
    # loads, but the one entry iRedAPD silently never matches is named
    assert s.warnings == (
        "settings.py:61: MYNETWORKS entry '172.16.*.*' is tried only with ENABLE_ALL_WILDCARD_IP = True and is"
        " ignored (as iRedAPD does); perhaps you mean '172.16.0.0/16'",
    )
    assert s.GREYLISTING_MESSAGE == "Intentional policy rejection, please try again later"  # untouched default


def test_defaults_are_not_shared_between_loads() -> None:
    first = st.parse("PLUGIN_PRIORITIES['x'] = 1\nplugins += ['y']\n")
    second = st.parse("")
    assert second.PLUGIN_PRIORITIES == {}
    assert "y" not in second.plugins
    assert first.PLUGIN_PRIORITIES == {"x": 1}
    assert st.BY_NAME["PLUGIN_PRIORITIES"].default == {}


def test_settings_are_read_only() -> None:
    s = st.parse("")
    with pytest.raises(AttributeError):
        s.listen_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "listen_port = '77x'",
            "settings.py:2: listen_port = '77x': expected a TCP port number (1-65535), as int or string",
        ),
        (
            "listen_port = 70000",
            "settings.py:2: listen_port = 70000: expected a TCP port number (1-65535), as int or string",
        ),
        (
            "GREYLISTING_BLOCK_EXPIRE = '5x'",
            "settings.py:2: GREYLISTING_BLOCK_EXPIRE = '5x': expected minutes as an integer",
        ),
        (
            "GREYLISTING_BLOCK_EXPIRE = -1",
            "settings.py:2: GREYLISTING_BLOCK_EXPIRE = -1: expected minutes as an integer >= 0",
        ),
        ("plugins = 'greylisting'", "settings.py:2: plugins = 'greylisting': expected a list of strings"),
        ("backend = 'oracle'", "settings.py:2: backend = 'oracle': expected one of 'sqlite', 'mysql', 'pgsql', 'ldap'"),
        ("LOG_SMTP_SESSIONS = 'maybe'", "settings.py:2: LOG_SMTP_SESSIONS = 'maybe': expected True or False"),
        ("DNS_QUERY_TIMEOUT = 0", "settings.py:2: DNS_QUERY_TIMEOUT = 0: expected a number of seconds > 0"),
        (
            "PLUGIN_PRIORITIES['x'] = 'high'",
            "settings.py:2: PLUGIN_PRIORITIES = {'x': 'high'}: expected a dict of plugin name -> integer priority",
        ),
        (
            "DNS_NAMESERVERS = ['dns.example']",
            "settings.py:2: DNS_NAMESERVERS = ['dns.example']: expected a list of 'ip' or 'ip:port'; 'dns.example' is not",
        ),
        (
            "STORE_FAILURE_ACTION = 'REJECT x'",
            "settings.py:2: STORE_FAILURE_ACTION = 'REJECT x': expected 'DUNNO' or a temporary failure such as '451 4.3.0 text'",
        ),
        ("SYSLOG_FACILITY = 'local9'", "settings.py:2: SYSLOG_FACILITY = 'local9': expected one of"),
        ("log_level = 'loud'", "settings.py:2: log_level = 'loud': expected one of 'debug'"),
        ("workers = 'many'", "settings.py:2: workers = 'many': expected a worker count as an integer"),
        (
            "worker_timeout = 2",
            "settings.py:2: worker_timeout = 2: expected seconds as an integer: 0 (never) or at least 5",
        ),
    ],
)
def test_bad_values_name_file_line_setting_and_expected_form(line: str, message: str) -> None:
    (problem,) = problems(f"from libs.default_settings import *\n{line}\n")
    assert problem.startswith(message)


def test_every_problem_is_reported_at_once() -> None:
    got = problems("listen_port = 'x'\nfrom os import path\nGREYLISTING_BLOCK_EXPIRE = '5x'\nx = undefined_name\n")
    assert len(got) == 3
    assert any(p.startswith("settings.py:1: listen_port") for p in got)
    assert any(p.startswith("settings.py:3: GREYLISTING_BLOCK_EXPIRE") for p in got)
    assert any(p.startswith("settings.py:4:") and "undefined_name" in p for p in got)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("listen_port = (", "settings.py:1: syntax error"),
        ("import os\nlisten_port = os.environ['PORT']\n", "settings.py:2: listen_port: only literal values"),
        ("if True:\n    listen_port = 1\n", "settings.py:1: unsupported statement"),
        ("UNKNOWN_DICT['x'] = 1\n", "settings.py:1: UNKNOWN_DICT: name UNKNOWN_DICT is not defined"),
        ("listen_port['x'] = 1\n", "settings.py:1: listen_port: not a dict"),
        ("plugins += 'x'\n", "settings.py:1: plugins: cannot evaluate"),
    ],
)
def test_unreadable_statements(text: str, fragment: str) -> None:
    assert any(fragment in p for p in problems(text)), problems(text)


@pytest.mark.parametrize(
    "name, hint",
    [
        ("GREYLISTING_BLOCK_EXPIRY", "did you mean GREYLISTING_BLOCK_EXPIRE?"),
        ("greylisting_block_expire", "did you mean GREYLISTING_BLOCK_EXPIRE?"),
        ("listen_prot", "did you mean listen_port?"),
        ("MYNETWORK", "did you mean MYNETWORKS?"),
    ],
)
def test_unknown_name_warns_with_suggestion(name: str, hint: str) -> None:
    s = st.parse(f"\n{name} = 1\n", "settings.py")
    (warning,) = s.warnings
    assert warning.startswith(f"settings.py:2: unknown setting {name}")
    assert warning.endswith(hint)
    assert s.get(name) == 1  # kept: custom checks may read it


def test_unknown_name_without_near_miss() -> None:
    (warning,) = st.parse("COMPLETELY_DIFFERENT_THING = 1\n").warnings
    assert "did you mean" not in warning


def test_obsolete_names_warn() -> None:
    (warning,) = st.parse("log_action_in_db = True\n", "s.py").warnings
    assert warning == "s.py:1: log_action_in_db is obsolete and ignored"


def test_mynetworks_entry_with_host_bits_warns_like_postfix() -> None:
    s = st.parse("\nMYNETWORKS = ['192.168.1.1/24', '10.0.0.0/8', 'x/y']\n", "s.py")
    assert s.MYNETWORKS == ("192.168.1.1/24", "10.0.0.0/8", "x/y")  # iRedAPD drops them at use; so do we
    assert s.warnings == (
        "s.py:2: MYNETWORKS entry '192.168.1.1/24' has host bits set and is ignored (as iRedAPD does); "
        "perhaps you mean '192.168.1.0/24'",
        "s.py:2: MYNETWORKS entry 'x/y' is not a network and is ignored",
    )


def test_ports_and_numbers_accept_strings_as_iredmail_writes_them() -> None:
    s = st.parse("listen_port = '7777'\nvmail_db_port = ' 5432 '\nDNS_QUERY_TIMEOUT = '2.5'\nworkers = '3'\n")
    assert (s.listen_port, s.vmail_db_port, s.DNS_QUERY_TIMEOUT, s.workers) == (7777, 5432, 2.5, 3)


def test_reassignment_last_wins_and_names_refer_to_earlier_values() -> None:
    s = st.parse("vmail_db_server = 'a'\namavisd_db_server = vmail_db_server\nvmail_db_server = 'b'\n")
    assert (s.vmail_db_server, s.amavisd_db_server) == ("b", "a")


def test_file_encoding(tmp_path: Path) -> None:
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbfvmail_db_password = 'p\xc3\xa4ss'\n")
    assert st.load(str(bom)).vmail_db_password == "päss"
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\nvmail_db_password = 'p\xe4ss'\n")
    assert st.load(str(latin)).vmail_db_password == "päss"
    broken = tmp_path / "broken.py"
    broken.write_bytes(b"vmail_db_password = 'p\xe4ss'\n")
    with pytest.raises(st.ConfigError):
        st.load(str(broken))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(st.ConfigError) as err:
        st.load(str(tmp_path / "nope.py"))
    assert "cannot read settings file" in str(err.value)


def test_settings_path_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("APD_SETTINGS", "/from/env.py")
    assert st.settings_path("/from/cli.py") == "/from/cli.py"
    assert st.settings_path(None) == "/from/env.py"
    monkeypatch.delenv("APD_SETTINGS")
    expected = st.DEFAULT_SETTINGS_PATH if os.path.exists(st.DEFAULT_SETTINGS_PATH) else None
    assert st.settings_path(None) == expected


def test_every_default_passes_its_own_converter() -> None:
    for setting in st.REGISTRY:
        assert setting.convert(setting.default) == setting.default, setting.name


def test_registry_names_are_unique() -> None:
    names = [s.name for s in st.REGISTRY]
    assert len(names) == len(set(names))


# --- apd --check-config (exit codes, messages)


def run_apd(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apd", *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=timeout,
    )


def test_check_config_accepts_iredmail_file(tmp_path: Path) -> None:
    path = write(tmp_path, IREDMAIL_SETTINGS.replace("'custom_spam_trap'", "'reject_null_sender'"))
    result = cli.main(["--check-config", "-c", str(path)])
    assert result == 0


def test_check_config_bad_value_exits_78_with_message(tmp_path: Path) -> None:
    path = write(tmp_path, "from libs.default_settings import *\nlisten_port = 'seven'\n")
    result = run_apd("--check-config", "-c", str(path))
    assert result.returncode == 78
    assert f"{path}:2: listen_port = 'seven': expected a TCP port number" in result.stderr


def test_check_config_unknown_name_warns_and_passes(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "plugins = ['reject_null_sender']\nGREYLISTING_BLOCK_EXPIRY = 5\n")
    assert cli.main(["--check-config", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:2: unknown setting GREYLISTING_BLOCK_EXPIRY; did you mean GREYLISTING_BLOCK_EXPIRE?" in err


def test_check_config_unknown_plugin_exits_78_naming_file_and_line(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "listen_port = 7777\nplugins = ['reject_null_sender', 'reject_evrything']\n")
    assert cli.main(["--check-config", "-c", str(path)]) == 78
    assert capsys.readouterr().err == f"apd: {path}:2: plugins: unknown check 'reject_evrything'\n"


def test_origin_names_the_line_of_a_setting_until_it_is_replaced() -> None:
    s = st.parse("listen_port = 7777\nplugins = []\nplugins += ['x']\n", "s.py")
    assert (s.origin("listen_port"), s.origin("plugins"), s.origin("backend")) == ("s.py:1", "s.py:3", "s.py")
    assert s.replace(listen_port=1).origin("listen_port") == "s.py"
    assert s.replace(listen_port=1).origin("plugins") == "s.py:3"
    assert st.defaults().origin("plugins") == "(built-in defaults)"


# --- hostile or careless files: a file:line message (exit 78), never a traceback or exhausted memory

TERMS = "1+" * 100_000 + "1"


@pytest.mark.parametrize(
    "text, message",
    [
        ("x = 'a' * 99999999999999999999\n", "settings.py:1: x: value too large: more than 1048576 characters"),
        ("x = 'ab' * 99999999999\n", "settings.py:1: x: value too large"),  # MemoryError before the bound
        ("x = [0] * 99999999999\n", "settings.py:1: x: value too large"),
        ("x = 99999999999 * [0]\n", "settings.py:1: x: value too large"),
        ("x = '' * 99999999999999999999\n", "settings.py:1: x: value too large"),  # OverflowError even when empty
        ("x = [[0] * 1000] * 2000\n", "settings.py:1: x: value too large"),  # nested items count
        ("x = 'a' * 600000\ny = x + x\n", "settings.py:2: y: value too large"),
        ("x = 'a' * 600000\nplugins = [x, x]\n", "settings.py:2: plugins: value too large"),
        ("x = 'a' * 1000000\ny = []\ny.extend(x)\ny.extend(x)\n", "settings.py:4: y: value too large"),
        ("x = 0x" + "f" * 300 + "\n", "settings.py:1: x: number too large: more than 1024 bits"),
        (
            "x = 99999999999999999999 * 99999999999999999999" + " * 99999999999999999999" * 60 + "\n",
            "settings.py:1: x: number too large",
        ),
        ("x = [" + "1+" * 150 + "1]\n", "settings.py:1: x: expression nested more than 100 levels deep"),
        ("listen_port = 7777\n\nx = " + TERMS + "\n", "settings.py:3: x: expression too long or nested too deeply"),
        ("x = [" + "-" * 100_000 + "1]\n", "settings.py:1: x: expression too long or nested too deeply"),
        ("plugins.append()\n", "settings.py:1: plugins: append() takes one value"),
        ("x = 1.5 * 0x" + "f" * 256 + "\n", "settings.py:1: x: cannot evaluate: int too large to convert to float"),
    ],
)
def test_oversized_values_are_refused_before_they_are_built(text: str, message: str) -> None:
    got = problems(text)
    assert len(got) == 1 and got[0].startswith(message), got


def test_total_size_built_by_one_file_is_bounded() -> None:
    text = "".join(f"x{i} = 'a' * 1000000\n" for i in range(20))
    got = problems(text)
    assert got == [  # reading stops at the statement that spends the budget
        "settings.py:17: x16: the file builds more than 16777216 characters or items in all;"
        " the rest of the file is not read"
    ]


@pytest.mark.parametrize("start, statement", [("[]", "y.append(x)"), ("{}", "y['k'] = x"), ("[]", "y.extend([x])")])
def test_what_goes_into_a_container_counts_towards_the_total(start: str, statement: str) -> None:
    got = problems(f"x = 'a' * 1000000\ny = {start}\n" + f"{statement}\n" * 20)
    # (an extend([x]) is charged for its list and again for what goes in: it stops sooner)
    assert len(got) == 1 and ": y: the file builds more than 16777216 characters or items in all" in got[0], got


def test_ten_thousand_appends_load_quickly() -> None:
    started = time.monotonic()
    s = st.parse(
        "MYNETWORKS = []\n" + "".join(f"MYNETWORKS.append('10.{i // 256}.{i % 256}.1')\n" for i in range(10_000))
    )
    assert len(s.MYNETWORKS) == 10_000 and s.warnings == ()
    assert time.monotonic() - started < 10


def test_a_long_value_is_cut_short_in_the_message() -> None:
    (problem,) = problems("listen_port = 'x' * 100000\n")
    assert problem.startswith("settings.py:1: listen_port = 'xxxx") and problem.endswith(
        "...: expected a TCP port number (1-65535), as int or string"
    )
    assert len(problem) < 400


def test_a_file_over_one_mib_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.py"
    path.write_text("# padding\n" * 110_000)
    with pytest.raises(st.ConfigError) as err:
        st.load(str(path))
    assert err.value.problems == [f"{path}: settings file larger than 1048576 bytes"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("listen_address = ''", "listen_address = '': expected at least one IPv4 or IPv6 address"),
        ("listen_address = ' , '", "listen_address = ' , ': expected at least one IPv4 or IPv6 address"),
        (
            "listen_address = '127.0.0.1, localhost'",
            "listen_address = '127.0.0.1, localhost': expected IPv4 or IPv6 addresses separated by commas or"
            " spaces; 'localhost' is not one",
        ),
        ("listen_address = '999.0.0.1'", "listen_address = '999.0.0.1': expected IPv4 or IPv6 addresses"),
        (
            "SQL_QUERY_TIMEOUT = 'nan'",
            "SQL_QUERY_TIMEOUT = 'nan': expected a number of seconds > 0 and at most 1000000",
        ),
        ("SQL_QUERY_TIMEOUT = 'inf'", "SQL_QUERY_TIMEOUT = 'inf': expected a number of seconds > 0 and at most"),
        ("LDAP_TIMEOUT = 'NaN'", "LDAP_TIMEOUT = 'NaN': expected a number of seconds > 0"),
        ("DNS_QUERY_TIMEOUT = 1e999", "DNS_QUERY_TIMEOUT = inf: expected a number of seconds > 0"),
        ("REQUEST_TIMEOUT = -1e999", "REQUEST_TIMEOUT = -inf: expected a number of seconds > 0"),
        ("SPF_TIME_BUDGET = 1e300", "SPF_TIME_BUDGET = 1e+300: expected a number of seconds > 0 and at most 1000000"),
        ("SPF_TIME_BUDGET = 0x" + "f" * 256, "SPF_TIME_BUDGET = 1797"),  # too large for a float
    ],
)
def test_listen_address_and_numbers(line: str, message: str) -> None:
    (problem,) = problems(f"\n{line}\n")
    assert problem.startswith(f"settings.py:2: {message}"), problem


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1, ::1", "[::1]", "0.0.0.0 ::", "192.0.2.1,[2001:db8::1]"])
def test_listen_address_accepts_what_the_server_binds(value: str) -> None:
    assert st.parse(f"listen_address = {value!r}\n").listen_address == value


def test_replace_refuses_nan_too() -> None:
    with pytest.raises(st.ConfigError) as err:
        st.defaults().replace(SQL_QUERY_TIMEOUT=float("nan"))
    assert err.value.problems == ["SQL_QUERY_TIMEOUT = nan: expected a number of seconds > 0 and at most 1000000"]


@pytest.mark.parametrize(
    "text, line",
    [
        ("x = 'a' * 99999999999999999999\n", "x: value too large"),
        ("listen_port = 7777\nx = " + TERMS + "\n", "2: x: expression too long or nested too deeply"),
        ("listen_address = ''\n", "1: listen_address = '': expected at least one IPv4 or IPv6 address"),
        ("SQL_QUERY_TIMEOUT = 'nan'\n", "1: SQL_QUERY_TIMEOUT = 'nan': expected a number of seconds"),
    ],
)
def test_check_config_exits_78_with_the_problem(tmp_path: Path, capsys, text: str, line: str) -> None:
    path = write(tmp_path, text)
    assert cli.main(["--check-config", "-c", str(path)]) == 78
    err = capsys.readouterr().err
    assert err.startswith(f"apd: {path}:") and line in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "mode, text, message",
    [
        (
            ["--check-config"],
            "x = " + TERMS + "\n",
            "1: x: expression too long or nested too deeply to read (at most 100 levels)",
        ),
        ([], "x = " + TERMS + "\n", "1: x: expression too long or nested too deeply to read (at most 100 levels)"),
        (
            [],
            "listen_address = ' , '\n",
            "1: listen_address = ' , ': expected at least one IPv4 or IPv6 address, e.g. '127.0.0.1' or"
            " '127.0.0.1, ::1'",
        ),
        (
            [],
            "SQL_QUERY_TIMEOUT = 'inf'\n",
            "1: SQL_QUERY_TIMEOUT = 'inf': expected a number of seconds > 0 and at most 1000000",
        ),
    ],
)
def test_apd_process_exits_78_with_one_line(tmp_path: Path, mode: list[str], text: str, message: str) -> None:
    """Also `apd -c FILE` itself: before these checks, '' listened on nothing and 'inf' ran."""
    path = write(tmp_path, text)
    result = run_apd(*mode, "-c", str(path), "--log-to", "stderr", timeout=20)
    assert (result.returncode, result.stderr) == (78, f"apd: {path}:{message}\n")


@pytest.mark.parametrize(
    "entry, all_wildcards, warning",
    [
        ("192.0.2.1", False, None),
        ("2001:db8::1", False, None),
        ("192.0.2.0/24", False, None),
        ("192.0.2.*", False, None),
        ("192.0.*.4", False, None),
        ("192.0.*.*", True, None),
        ("*.*.*.4", True, None),
        (
            "172.16.*.*",
            False,
            "is tried only with ENABLE_ALL_WILDCARD_IP = True and is ignored (as iRedAPD does); perhaps you mean"
            " '172.16.0.0/16'",
        ),
        ("*.*.*.4", False, "is tried only with ENABLE_ALL_WILDCARD_IP = True and is ignored (as iRedAPD does)"),
        ("1.*.3.*", True, "is a wildcard form never tried and is ignored (as iRedAPD does)"),
        ("999.1.1.*", True, "is not an IP address, wildcard IPv4 (192.0.2.*) or CIDR network and is ignored"),
        ("***.1.1.1", True, "is not an IP address, wildcard IPv4 (192.0.2.*) or CIDR network and is ignored"),
        ("mail.example.com", False, "is not an IP address, wildcard IPv4 (192.0.2.*) or CIDR network and is ignored"),
        (" 192.0.2.1", False, "is not an IP address, wildcard IPv4 (192.0.2.*) or CIDR network and is ignored"),
        (
            "2001:DB8::1",
            False,
            "never equals a client address as Postfix writes it and is ignored; perhaps you mean '2001:db8::1'",
        ),
        ("x/y", False, "is not a network and is ignored"),
    ],
)
def test_mynetworks_entries_never_matched_are_named(entry: str, all_wildcards: bool, warning: str | None) -> None:
    got = st.network_warnings([entry], all_wildcards)
    if warning is None:
        assert got == []
    else:
        (message,) = got
        assert message.startswith(f"MYNETWORKS entry {entry!r} {warning}"), message


def test_mynetworks_warnings_follow_enable_all_wildcard_ip() -> None:
    text = "MYNETWORKS = ['192.168.*.*', 'bogus']\nENABLE_ALL_WILDCARD_IP = {}\n"
    assert [w.split(" is ")[0] for w in st.parse(text.format(False), "s.py").warnings] == [
        "s.py:1: MYNETWORKS entry '192.168.*.*'",
        "s.py:1: MYNETWORKS entry 'bogus'",
    ]
    assert [w.split(" is ")[0] for w in st.parse(text.format(True), "s.py").warnings] == [
        "s.py:1: MYNETWORKS entry 'bogus'"
    ]


# --- the generated sample


def test_committed_sample_is_current() -> None:
    committed = (ROOT / "conf" / "settings.py.sample").read_text()
    assert committed == render(), "conf/settings.py.sample is stale: run `make conf` and commit it"


def test_sample_names_every_setting_and_loads() -> None:
    text = render()
    for setting in st.REGISTRY:
        assert f"\n#{setting.name} = {literal(setting.default)}\n" in text
    assert st.parse(text, "sample").as_dict() == st.defaults().as_dict()
    uncommented = "\n".join(line[1:] if line[1:2].isalpha() else line for line in text.splitlines())
    loaded = st.parse(uncommented, "sample")
    assert loaded.as_dict() == st.defaults().as_dict()
    assert loaded.warnings == ()


def test_print_sample(capsys) -> None:
    assert cli.main(["--print-sample"]) == 0
    assert capsys.readouterr().out == render()


def test_print_config_masks_secrets(capsys, tmp_path) -> None:
    path = write(
        tmp_path,
        "vmail_db_password = 'pw1'\nldap_bindpw = 'pw2'\nsrs_secrets = ['pw3']\n"
        "mlmmjadmin_api_auth_token = 'pw4'\nNOTIFICATION_SMTP_PASSWORD = 'pw5'\niredapd_db_password = ''\n",
    )
    assert cli.main(["--print-config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    for secret in ("pw1", "pw2", "pw3", "pw4", "pw5"):
        assert secret not in out
    assert "vmail_db_password = '********'" in out
    assert "iredapd_db_password = ''" in out  # an empty one is shown as empty
    assert "MLMMJADMIN_API_AUTH_TOKEN_HEADER_NAME = 'X-MLMMJADMIN-API-AUTH-TOKEN'" in out
    assert "listen_port = 7777" in out


def test_naming_one_large_value_again_and_again_is_bounded_too() -> None:
    """Each ``b = [a]`` walks all of ``a``: it is charged in full, so the file fails fast instead
    of taking hours (a 1 MiB file of such lines)."""
    text = "a = ['x'] * 300000\n" + "b = [a]\n" * 5000
    started = time.monotonic()
    with pytest.raises(st.ConfigError) as raised:
        st.parse(text, "settings.py")
    assert time.monotonic() - started < 60  # ~3 s idle; before the fix, hours
    assert "characters or items in all" in str(raised.value)


@pytest.mark.parametrize("name", ["CHANGE_PASSWORD_DAYS", "GREYLISTING_AUTH_TRIPLET_EXPIRE", "SENDERSCORE_CACHE_DAYS"])
def test_day_counts_are_bounded_so_date_arithmetic_cannot_overflow(name: str) -> None:
    with pytest.raises(st.ConfigError) as raised:
        st.parse(f"{name} = 1000000000\n", "settings.py")
    assert f"settings.py:1: {name} = 1000000000: expected days as an integer from 0 to 36500" in str(raised.value)
    assert getattr(st.parse(f"{name} = 36500\n"), name) == 36500
