"""Benchmarks behind ``liveportrait benchmark``.

Each module exposes ``add_arguments(parser)`` (optional), ``run(args, settings) -> dict`` (the
measured figures, JSON-serialisable, including a ``system`` block saying on which machine) and
``format_table(result) -> str``.
"""
