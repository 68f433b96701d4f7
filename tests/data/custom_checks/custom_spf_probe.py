"""Test-only check: OK when the client is listed in the sender domain's SPF (SpfEvaluator.is_allowed)."""

from __future__ import annotations

from apd.checks.base import Check
from apd.spf import SpfEvaluator


class SpfProbe(Check):
    name = "custom_spf_probe"

    def __init__(self, settings, store):
        super().__init__(settings, store)
        self.spf = SpfEvaluator(settings)

    def check(self, request, ctx):
        if self.spf.is_allowed(request.client_address, request.sender_domain):
            return "OK client listed in SPF"
        return None
