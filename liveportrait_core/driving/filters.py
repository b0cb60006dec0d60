"""The One Euro filter (Casiez, Roussel and Vogel, CHI 2012): low lag when moving, steady when still.

One implementation serves landmarks and the crop box (tracking) and rotation and expression
(animation). It filters numpy arrays or torch tensors of any fixed shape element-wise, with the
timestamps of the samples, so that a dropped frame does not change the filter's behaviour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OneEuroParams:
    """The filter's three parameters; their defaults live in the settings (tracking and animation)."""

    min_cutoff: float  #: Hz; lower is steadier when still, with more lag
    beta: float  #: how fast the cutoff rises with speed; higher is less lag when moving
    d_cutoff: float  #: Hz, for the speed estimate

    @classmethod
    def of(cls, settings: Any) -> "OneEuroParams":
        """From a settings section with ``min_cutoff``, ``beta`` and ``d_cutoff`` fields."""
        return cls(settings.min_cutoff, settings.beta, settings.d_cutoff)


def _alpha(cutoff: Any, dt: float) -> Any:
    """Smoothing factor of an exponential filter with this cutoff (Hz); vectorises over arrays."""
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))


class OneEuroFilter:
    """Filters successive samples ``x`` (array-like, same shape each time) taken at times ``t`` (s)."""

    def __init__(self, params: OneEuroParams) -> None:
        self.params = params
        self._x: Any = None
        self._dx: Any = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    @property
    def value(self) -> Any:
        """The last filtered value (None before the first sample)."""
        return self._x

    def __call__(self, x: Any, t: float) -> Any:
        p = self.params
        if self._t is None:
            self._x, self._dx, self._t = x, x * 0, t
            return x
        if t <= self._t:  # a repeated or older timestamp carries no new information
            return self._x
        dt = t - self._t
        a_d = _alpha(p.d_cutoff, dt)
        dx = (x - self._x) / dt
        self._dx = self._dx + a_d * (dx - self._dx)
        a = _alpha(p.min_cutoff + p.beta * abs(self._dx), dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x
