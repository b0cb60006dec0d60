"""The seam between a plain network and its fast form: a shallow copy that replaces leaves only.

The rules are in the package docstring (models/fast/__init__.py); this module holds the tools.
"""
from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)

#: nn.Module's per-instance registries: copied (not shared) so that a substitution in the fast form
#: never reaches the plain module
_REGISTRIES = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")


def adopt(fast: nn.Module, plain: nn.Module) -> None:
    """Make ``fast`` (a new instance of a subclass of ``type(plain)``) a shallow copy of ``plain``.

    Called first in a fast form's ``__init__`` instead of ``super().__init__()``: the fast form then has
    the plain module's attributes, submodules, parameters and buffers (the same tensors: nothing is
    copied), so the plain ``forward`` runs unchanged on it; what the fast form assigns afterwards
    replaces a leaf in the copy only. ``plain_network(fast)`` gives the plain module back.
    """
    if not isinstance(fast, type(plain)):
        raise TypeError(f"{type(fast).__name__} is not a form of {type(plain).__name__}")
    state = dict(plain.__dict__)
    for key in _REGISTRIES:
        state[key] = type(state[key])(state[key])
    fast.__dict__.update(state)
    fast.__dict__["_plain"] = plain  # not a submodule: the fast form's state_dict does not repeat it


def fast_copy(plain: M, **leaves: nn.Module) -> M:
    """A shallow copy of ``plain`` (same class) with the named submodules replaced, e.g. a block
    whose ``conv_0`` is the Winograd form. ``plain`` itself is not changed."""
    fast = type(plain).__new__(type(plain))
    adopt(fast, plain)
    for name, module in leaves.items():
        setattr(fast, name, module)
    return fast


def plain_network(module: nn.Module) -> nn.Module:
    """The plain network a fast form was made from (the module holding the official state_dict), through
    ``torch.compile``'s wrapper; a plain network is its own."""
    module = getattr(module, "_orig_mod", module)
    return module.__dict__.get("_plain", module)
