"""OBS-side helpers for ``obs_liveportrait.py``.

Every function here that talks to OBS receives the ``obspython`` module as an argument and never imports it,
so that the helpers run under a fake ``obspython`` in unit tests. Importing this package is cheap and needs
only the standard library (``environment`` must work before the project's virtual environment is on
``sys.path``).
"""
