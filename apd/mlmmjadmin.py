"""The mlmmjadmin HTTP API, asked whether an address subscribes to a mailing list.

iRedAPD calls ``GET <endpoint>/<list>/has_subscriber/<address>`` with no timeout, so a hung
mlmmjadmin hangs the whole daemon. Here every call is bounded by ``MLMMJADMIN_API_TIMEOUT``, and
a failure (no connection, a timeout, an HTTP error, a body that is not JSON) counts as "not a
subscriber". While the API keeps failing, calls are skipped for a back-off (0.5 s doubling to
10 s) instead of costing the timeout on every request; one log line marks each change of state.
As iRedAPD, an https endpoint's certificate is not verified.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from apd.store.base import BACKOFF_FIRST, BACKOFF_MAX

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # an answer is a few bytes of JSON


class ApiFailure(Exception):
    """The API gave no usable answer."""


def subscriber_url(endpoint: str, list_address: str, subscriber: str) -> str:
    """The request URL; both addresses are percent-encoded (``@`` kept), so no value can add a
    path segment, a query or a fragment."""
    quote = urllib.parse.quote
    return f"{endpoint.rstrip('/')}/{quote(list_address, safe='@')}/has_subscriber/{quote(subscriber, safe='@')}"


def read_success(status: int, body: bytes) -> bool:
    """``_success`` of an answer; raises ApiFailure for anything but a JSON object from HTTP 200."""
    if status != 200:
        raise ApiFailure(f"HTTP {status}")
    try:
        answer = json.loads(body)
    except ValueError:
        raise ApiFailure("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ApiFailure("the answer is not a JSON object")
    return answer.get("_success") is True


class MlmmjAdmin:
    """One worker's client: its settings and the outage state of the API."""

    def __init__(self, settings: Any, clock: Callable[[], float] = time.monotonic):
        self.endpoint: str = settings.mlmmjadmin_api_endpoint
        self.timeout = float(settings.MLMMJADMIN_API_TIMEOUT)
        self._headers = {settings.MLMMJADMIN_API_AUTH_TOKEN_HEADER_NAME: settings.mlmmjadmin_api_auth_token}
        self._clock = clock
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False  # as iRedAPD (verify=False)
        self._tls.verify_mode = ssl.CERT_NONE
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST

    @property
    def available(self) -> bool:
        return self._down_since is None

    def has_subscriber(self, list_address: str, subscriber: str) -> bool:
        """Does ``subscriber`` subscribe to ``list_address``? False when the API cannot tell."""
        if self._down_since is not None and self._clock() < self._retry_at:
            return False
        try:
            found = self._ask(subscriber_url(self.endpoint, list_address, subscriber))
        except ApiFailure as exc:
            self._mark_down(str(exc))
            return False
        if self._down_since is not None:
            log.warning("mlmmjadmin API %s is reachable again", self.endpoint)
        self._down_since = None
        self._backoff = BACKOFF_FIRST
        return found

    def _ask(self, url: str) -> bool:
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as response:
                return read_success(response.status, response.read(MAX_BODY))
        except urllib.error.HTTPError as exc:
            exc.close()
            raise ApiFailure(f"HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets; ValueError: a malformed endpoint
            reason = getattr(exc, "reason", exc)
            raise ApiFailure(" ".join(str(reason).split()) or type(exc).__name__) from None

    def _mark_down(self, reason: str) -> None:
        now = self._clock()
        if self._down_since is None:
            log.error("mlmmjadmin API %s is unavailable: %s", self.endpoint, reason)
            self._down_since = now
        else:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._retry_at = now + self._backoff
