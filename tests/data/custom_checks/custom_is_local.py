"""Test-only custom check: answers whether the recipient domain is local, via ctx only.

Loaded through CUSTOM_CHECKS_DIR; the answer names what the account backend said, so a
test can see the backend's facts through a real policy request.
"""

from apd.checks.base import Check


class IsLocal(Check):
    name = "custom_is_local"

    def check(self, request, ctx):
        domain = request.recipient_domain
        if not ctx.is_local_domain(domain, include_backupmx=False):
            return "REJECT remote"
        target = ctx.alias_target(domain)
        return f"REJECT local alias of {target}" if target else "REJECT local"
