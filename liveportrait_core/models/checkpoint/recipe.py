"""Deterministic synthetic weights ("recipe weights") for tests and benchmarks only.

They are NOT a model: a face driven with them produces noise. They exist so that the networks can be
checked against the official implementation's outputs (the reference vectors were computed with the
very same numbers) and timed without the official files. Anything that uses them must say so.

Every tensor of the official layout (``layout.py``) gets its own generator seeded with
``[SEED, crc32("<module>/<key>")]``; the value depends on the key's last component (conv/linear
weights scaled by 1/sqrt(fan_in), norm affine near 1, biases small, spectral-norm ``u`` from one
power-iteration step). Pure numpy, float64 maths cast once to float32, so the numbers are
bit-identical on every machine.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from liveportrait_core.models.checkpoint.layout import MODULE_NAMES, ModuleLayout, module_layout

SEED = 2024


def _value(module: str, key: str, shape: tuple[int, ...], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    prefix, suffix = key.rsplit(".", 1)
    rng = np.random.default_rng([SEED, zlib.crc32(f"{module}/{key}".encode("utf-8"))])
    n = rng.standard_normal(size=shape)
    if suffix in ("weight", "weight_orig") and len(shape) >= 2:
        v = n * (1.0 / math.sqrt(int(np.prod(shape[1:]))))
    elif suffix == "weight":
        v = 1.0 + 0.1 * n
    elif suffix == "bias":
        sibling = shapes.get(prefix + ".weight", shapes.get(prefix + ".weight_orig"))
        if sibling is None:
            raise ValueError(f"recipe: bias {module}/{key} has no sibling weight")
        v = 0.02 * n if len(sibling) >= 2 else 0.1 * n
    elif suffix == "running_mean":
        v = 0.1 * n
    elif suffix == "running_var":
        v = 1.0 + 0.1 * np.abs(n)
    elif suffix == "weight_v":
        v = n / np.linalg.norm(n)
    elif suffix in ("gamma", "beta"):
        v = 0.1 * n
    else:
        raise ValueError(f"recipe: no rule for {module}/{key}")
    return v.astype(np.float32)


def module_weights(layout: ModuleLayout) -> dict[str, np.ndarray]:
    """The recipe state_dict of one module, keys in the official order."""
    shapes = layout.shapes()
    sd: dict[str, np.ndarray] = {}
    for spec in layout.tensors:
        suffix = spec.key.rsplit(".", 1)[-1]
        if suffix == "num_batches_tracked":
            sd[spec.key] = np.zeros(spec.shape, np.int64)
        elif suffix != "weight_u":
            sd[spec.key] = _value(layout.name, spec.key, spec.shape, shapes)
    for spec in layout.tensors:  # second pass: one power-iteration step for the spectral-norm u
        if spec.key.endswith(".weight_u"):
            p = spec.key[: -len(".weight_u")]
            w = sd[p + ".weight_orig"].astype(np.float64)
            u = w.reshape(w.shape[0], -1) @ sd[p + ".weight_v"].astype(np.float64)
            sd[spec.key] = (u / np.linalg.norm(u)).astype(np.float32)
    return {spec.key: sd[spec.key] for spec in layout.tensors}


def recipe_weights(names: tuple[str, ...] = MODULE_NAMES) -> dict[str, dict[str, np.ndarray]]:
    """``{module name: {key: ndarray}}`` for the given official module names (all seven by default)."""
    return {name: module_weights(module_layout(name)) for name in names}


def recipe_state_dicts(names: tuple[str, ...] = MODULE_NAMES) -> dict[str, dict]:
    """The recipe weights as torch tensors, ready for ``load_state_dict(strict=True)``."""
    import torch

    return {m: {k: torch.from_numpy(v) for k, v in sd.items()} for m, sd in recipe_weights(names).items()}
