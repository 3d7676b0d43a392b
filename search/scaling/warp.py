"""A warp of the hyperparameters in which a skewed bowl is a parabola.

A learning rate's loss climbs faster towards divergence than below its optimum, and a
quadratic fitted to such a bowl puts its vertex on the gentle side. In the warp

    w = (exp(s (h - c)) - 1) / s        (w = h - c where the power s is 0)

of a hyperparameter's natural value ``h`` (``ln lr``: a power ``lr^s`` up to an affine
map), a positive ``s`` stretches the values above ``c`` and squeezes those below, so a
bowl rising faster above its optimum is closer to a parabola in ``w``. Since
``w'' / w' = s`` everywhere, one power makes the same asymmetry wherever an optimum
lies: one ``s`` per hyperparameter serves every cell of a sweep, each cell fitting its
own parabola. The warp is a fixed function of ``h``, so a bowl fitted in ``w`` stays a
linear least-squares fit, and its vertex maps back through ``Warp.invert``.

``choose_warp`` picks the powers from a fit's pooled residuals; the designed sweeps'
cells (``search.scaling.cells``) supply theirs. The engine studies' response surface
does not warp. One parabola spans every scale there, and in ``w`` a vertex ``d`` above
the centre is ``exp(2 s d)`` times as steep in ``h``: with a fixed centre the fitted
optimum bowed across scales (and ran off by units on a strongly skewed synthetic bowl).
A centre that follows the optimum removed that bow and, on noiseless studies, the
skew's bias; but on 80 engine studies at 1% and 3% noise it lost in 17 and gained in 8
(the power it fits is noisy, and warping one column moves the others' laws), and the
fixed-centre warp gained in 10 and lost in 8, no more than noise
(docs/notes/engine-experiments.md, "The surface's warp, scored on untouched skewed
truths, and taken out").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

# The powers tried, per natural unit of the hyperparameter (ln lr, log2 batch, ...).
WARP_POWERS = np.round(np.arange(-1.5, 1.51, 0.1), 2)
# Confidence at which a power is taken over no warp (``choose_warp``).
WARP_LEVEL = 0.99
# Where a warped optimum lies beyond the warp's range (``1 + s w <= 0``), ``invert``
# takes it this close to the range's edge: far out on the squeezed side.
_EDGE = 1e-6


@dataclass(frozen=True)
class Warp:
    """Per column, the power ``s`` (0: unwarped) and the centre ``c`` of the warp."""

    power: np.ndarray
    centre: np.ndarray

    def apply(self, h: np.ndarray) -> np.ndarray:
        d = h - self.centre
        s = np.where(self.power == 0, 1.0, self.power)
        return np.where(self.power == 0, d, np.expm1(s * d) / s)

    def invert(self, w: np.ndarray) -> np.ndarray:
        """``h`` for ``w``; a ``w`` beyond the warp's range (``1 + s w <= 0``: a bowl whose
        bottom maps to no value of the hyperparameter) is taken to just inside it, far out
        on the squeezed side, where the rules call the optimum unbracketed."""
        s = np.where(self.power == 0, 1.0, self.power)
        inside = np.maximum(1.0 + s * w, _EDGE)
        return np.where(self.power == 0, w, np.log(inside) / s) + self.centre


def choose_warp(hp: np.ndarray, residuals: Callable[[Warp], tuple[float, int]]) -> Warp | None:
    """The power per column of ``hp`` (n, m) among ``WARP_POWERS`` with the least pooled
    residual sum of squares (``residuals(warp)``: the fit's weighted RSS and residual
    degrees of freedom under ``warp``), taken where it beats no warp at ``WARP_LEVEL`` (a
    chi-squared test with one degree of freedom against the warped fit's residual
    variance); None where no column takes one. Each column's power is chosen with the
    others unwarped; the centres are the columns' medians."""
    m = hp.shape[1]
    centre = np.median(hp, axis=0)
    power = np.zeros(m)
    unwarped, _ = residuals(Warp(power=power.copy(), centre=centre))
    threshold = stats.chi2.ppf(WARP_LEVEL, 1)
    for j in range(m):
        trial = np.zeros(m)
        scores = []
        for s in WARP_POWERS:
            trial[j] = s
            scores.append(residuals(Warp(power=trial.copy(), centre=centre)))
        best = int(np.argmin([rss for rss, _ in scores]))
        rss, dof = scores[best]
        if dof > 0 and (unwarped - rss) / max(rss / dof, 1e-300) > threshold:
            power[j] = WARP_POWERS[best]
    return Warp(power=power, centre=centre) if power.any() else None
