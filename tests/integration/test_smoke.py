from apd import replies


def test_answers_dunno_and_null_sender(apd_factory):
    apd = apd_factory(plugins=["reject_null_sender"])
    with apd.client() as client:
        assert (
            client.ask(protocol_state="RCPT", sender="a@b.com", recipient="c@d.com", client_address="192.0.2.1")
            == "DUNNO"
        )
        reply = client.ask(
            protocol_state="RCPT", sender="", sasl_username="u@b.com", recipient="c@d.com", client_address="192.0.2.1"
        )
        assert reply == replies.REJECT_NULL_SENDER
