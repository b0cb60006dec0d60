"""One module per CLI command; see ``liveportrait_core.cli`` for the contract."""
