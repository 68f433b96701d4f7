"""make bench: load generator, null policy server, scenarios."""
