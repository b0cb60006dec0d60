"""One module per CLI command; see ``liveportrait_core.cli.main`` for the contract."""
