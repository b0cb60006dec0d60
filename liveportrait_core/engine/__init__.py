"""The real-time engine: stages on their own threads joined by latest-value hand-offs.

``core`` (the ``Engine``: threads, command API, status), ``backend`` (the two stage interfaces and the
product's backend), ``pipeline`` (the ``Animator`` a frame goes through), ``handoff``, ``stats``, ``cancel``.
Import the module you need (``from liveportrait_core.engine.core import Engine``): this package imports nothing.
"""
