"""SRS through a real Postfix: its cleanup asks apd's forward port for the envelope sender of a
forwarded message (sender_canonical_maps) and the reverse port for the recipient of a bounce
(recipient_canonical_maps)."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers.apd_process import free_port
from tests.helpers.servers import require_binary

SRS_DOMAIN = "srs.apd-e2e.test"
SENDER = "alice@orig.example"


@pytest.fixture
def srs_postfix(postfix_server, postfix_apd):
    forward, reverse = free_port(), free_port()
    apd = postfix_apd(
        plugins=["reject_null_sender"],
        srs_secrets=["e2e-secret"],
        srs_domain=SRS_DOMAIN,
        srs_forward_port=forward,
        srs_reverse_port=reverse,
    )
    postfix_server.postconf(
        sender_canonical_maps=f"tcp:127.0.0.1:{forward}",
        sender_canonical_classes="envelope_sender",
        recipient_canonical_maps=f"tcp:127.0.0.1:{reverse}",
        recipient_canonical_classes="envelope_recipient,header_recipient",
    )
    try:
        yield postfix_server, apd
    finally:
        postfix_server.postconf(sender_canonical_maps="", recipient_canonical_maps="")


def queued_envelope(postfix_server, queue_id: str) -> tuple[str, list[str]]:
    """(sender, recipients) of a queued message, read from its queue file with postcat."""
    postcat = require_binary("postcat")
    out = subprocess.run(
        [postcat, "-c", str(postfix_server.config_dir), "-e", "-q", queue_id], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    sender = next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("sender:"))
    recipients = [
        line.split(":", 1)[1].strip()
        for line in out.stdout.splitlines()
        if line.startswith(("recipient:", "done_recipient:"))
    ]
    return sender, recipients


def test_a_forwarded_sender_is_rewritten_and_its_bounce_goes_back(srs_postfix):
    postfix_server, apd = srs_postfix
    forwarded = postfix_server.send(SENDER, ["someone@example.org"])
    assert forwarded.data[0] == 250, forwarded
    sender, recipients = queued_envelope(postfix_server, forwarded.queue_id)
    assert sender.startswith("SRS0=") and sender.endswith(f"=orig.example=alice@{SRS_DOMAIN}"), sender
    assert recipients == ["someone@example.org"]

    bounce = postfix_server.send("", [sender], f"From: MAILER-DAEMON\r\nTo: <{sender}>\r\nSubject: bounce\r\n\r\nx\r\n")
    assert bounce.data[0] == 250, bounce
    bounce_sender, bounce_recipients = queued_envelope(postfix_server, bounce.queue_id)
    assert bounce_sender == ""
    assert bounce_recipients == [SENDER]
    log = apd.log()
    assert f"[srs][sender]  rewrote: {SENDER} -> {sender}" in log
    assert f"[srs][recipient]  reversed: {sender} -> {SENDER}" in log
