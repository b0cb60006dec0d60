"""The ``liveportrait`` command: ``main`` (argument parsing, settings, exit statuses) and one module per command."""
