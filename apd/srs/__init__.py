"""SRS, the Sender Rewriting Scheme (../shared/spec/srs.md): the address codec (``codec``), the
Postfix tcp_table framing (``table``) and the two lookup services on top of them (``service``)."""
