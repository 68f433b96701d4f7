"""apd: a Postfix SMTP access-policy server, drop-in compatible with iRedAPD."""

__version__ = "0.1.0"
