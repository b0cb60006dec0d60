"""The CPU's (and CUDA's) faster exact forms of the plain networks, applied once after loading.

The seam between a plain network and its fast form (one rule for every network):

* The plain network's ``forward`` (models/networks) is the ONLY statement of its structure. It calls
  named leaf steps: submodules (``SPADEDecoder.fc``, a block's ``conv_0`` or ``norm_0``, the hourglass
  decoder's ``conv``) and leaf methods (``SPADEDecoder.segmentation`` per resolution, ``to_image``;
  ``DenseMotionNetwork.hourglass_input``, ``heads``, ``outputs``). Plain modules hold no hook, flag
  or cache for a fast form; their state_dicts are the official ones, loaded strictly.
* A fast form is a shallow copy of the loaded plain network (``seam.adopt`` in a subclass's
  ``__init__``, or ``seam.fast_copy`` for a block) that replaces leaves only: a submodule by a module
  computing the same function (``FoldedConv2d``, ``WinogradConv3x3``, ``_FusedModulation``), a leaf
  method by the subclass's override (``FastSPADEDecoder.segmentation``, ``FastDenseMotionNetwork.heads``).
  A fast form never defines ``forward``; parameters and untouched submodules are shared with the plain
  network (no copy of the weights), which keeps its own leaves and stays usable
  (``seam.plain_network(fast)`` gives it back).
* A fast form equals its plain network within float32 rounding, and to 1e-10 in float64
  (tests/test_optimize.py, test_winograd.py, test_fft_conv.py, which also check that the fast leaves
  are the ones that run).

Modules: ``seam`` (the two tools above), ``optimize`` (the forms and ``prepare_for_inference``, which
the loader calls), ``winograd`` and ``fft_conv`` (the kernels they use).
"""
