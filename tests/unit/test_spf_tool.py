"""Pure parts of admin/spf_to_greylist_whitelists.py."""

import pytest

from admin.spf_to_greylist_whitelists import parse_args, valid_domains


@pytest.mark.parametrize(
    "names, valid, invalid",
    [
        (["Example.COM", "example.com", "b.example.org"], ["example.com", "b.example.org"], []),
        (["nodot", "bad_domain!", "", "x.y"], [], ["nodot", "bad_domain!", "", "x.y"]),
        (["_spf.google.com"], ["_spf.google.com"], []),
        (["@example.com", "192.0.2.1"], [], ["@example.com", "192.0.2.1"]),
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
