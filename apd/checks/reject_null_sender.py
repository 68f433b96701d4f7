"""reject_null_sender: an authenticated client may not send with an empty envelope sender."""

from __future__ import annotations

import logging

from apd import replies
from apd.checks.base import Check

log = logging.getLogger(__name__)


def decide(sasl_username: str, sender: str) -> str | None:
    if sasl_username and not sender:
        return replies.REJECT_NULL_SENDER
    return None


class RejectNullSender(Check):
    name = "reject_null_sender"

    def check(self, request, ctx):
        action = decide(request.sasl_username, request.sender)
        if action:
            log.info("Possible spam (authenticated as %s but sender address is null).", request.sasl_username)
        return action
