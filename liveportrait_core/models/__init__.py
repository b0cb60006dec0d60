"""The LivePortrait networks and everything that loads and runs them, in three kinds of module.

* ``networks/``: the plain networks, one file per network, with the official structure and state_dict names
  (``networks.build(name)``), and the keypoint maths on their outputs;
* ``checkpoint/``: the official file layout, reading/verifying/downloading weight files, recipe weights;
* ``fast/``: exact faster forms of the plain networks (Winograd, FFT, fused SPADE), applied after loading.

``loader`` sits on top: it builds the plain networks, loads the official files into them strictly, applies
the fast forms and runs each network under its precision policy (``LivePortraitModels.run``).
``small`` builds reduced networks for tests and benchmarks only.
"""
