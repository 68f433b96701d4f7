"""The pure parts of the mlmmjadmin client (apd/mlmmjadmin.py): the URL and the answer."""

from __future__ import annotations

import pytest

from apd.mlmmjadmin import ApiFailure, read_success, subscriber_url


@pytest.mark.parametrize(
    "endpoint,list_address,subscriber,url",
    [
        ("http://127.0.0.1:7790/api", "l@x.org", "u@x.org", "http://127.0.0.1:7790/api/l@x.org/has_subscriber/u@x.org"),
        ("http://h/api/", "l@x.org", "u@x.org", "http://h/api/l@x.org/has_subscriber/u@x.org"),
        # a value cannot add a path segment, a query or a fragment
        (
            "http://h/api",
            "../../x@x.org",
            "u@x.org?a#b",
            "http://h/api/..%2F..%2Fx@x.org/has_subscriber/u@x.org%3Fa%23b",
        ),
        ("http://h/api", "l+tag@x.org", "u&v@x.org", "http://h/api/l%2Btag@x.org/has_subscriber/u%26v@x.org"),
    ],
)
def test_subscriber_url(endpoint, list_address, subscriber, url):
    assert subscriber_url(endpoint, list_address, subscriber) == url


@pytest.mark.parametrize(
    "status,body,expected",
    [
        (200, b'{"_success": true}', True),
        (200, b'{"_success": false, "_msg": "NOT_SUBSCRIBED"}', False),
        (200, b'{"_success": "yes"}', False),  # only a JSON true counts
        (200, b"{}", False),
    ],
)
def test_read_success(status, body, expected):
    assert read_success(status, body) is expected


@pytest.mark.parametrize("status,body", [(200, b"<html>"), (200, b"[true]"), (204, b""), (500, b'{"_success": true}')])
def test_unusable_answers_are_failures(status, body):
    with pytest.raises(ApiFailure):
        read_success(status, body)
