"""A response surface of log-loss over the scaling axes and the hyperparameters.

Near its optimum a training run's loss is a bowl in each hyperparameter's natural
space (``ln lr``, ``log2 batch``, ``logit warmup``, ...), and the bowl's centre moves
with model size and tokens. The surface says exactly that, as one least-squares fit to
every successful observation:

    ln L = g(z) + h'b + h'W z + h'Q h / 2 + choice offsets

with ``z`` the log-axes (``ln N, ln D`` or ``ln C``), ``g`` a polynomial in ``z`` and
``h`` the transformed hyperparameters. Its optimum ``h*(z) = -Q^-1 (b + W z)`` is
linear in ``ln N`` and ``ln D``: the form of the scaling rules. When the data say the
bowl's centre bends with scale (an F-test on extra ``h z^2`` terms), a second surface
with those terms shows whether an optimum turns inside the data (then refused).

Why a surface and not the best runs: a search spends most trials near, not at, the
optimum, and explores each hyperparameter unevenly (learning rates above the optimum
fail, so successful runs pile up on one side). The runs nearest the front are then
lucky or one-sided, and a regression through their raw values inherits both. The
surface uses every run, and its curvature says where the bottom of each bowl lies even
when the runs sit on one side of it.

A hyperparameter whose bowl has no significant curvature has no identifiable optimum:
it is left out of the surface, and the rules say why (``Dropped``): the loss does not
depend on it over the range explored, or does but shows no bowl there, or its bowl
forms a saddle with another's.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import stats

from search.errors import NotEnoughDataError

# Observations per surface coefficient below which the cubic ``g`` falls back to
# quadratic, and below which no surface is fitted at all.
POINTS_PER_COEF_CUBIC = 5.0
MIN_POINTS_PER_COEF = 1.5
# Runs losing more than this (log-loss) to their optimal hyperparameters are far up a
# bowl's walls, and are down-weighted (see fit_surface).
BOWL_SCALE = 0.02
REWEIGHT_PASSES = 2


@dataclass(frozen=True)
class SurfaceData:
    """The observations a surface is fitted to, all rows aligned.

    ``log_axes`` (n, k): ``ln N, ln D`` or ``ln C``; ``hp`` (n, m): continuous
    hyperparameters in their transformed space; ``choice`` (n, q): 0/1 indicators of
    the non-reference levels of choice parameters; ``log_loss`` (n,).
    """

    log_axes: np.ndarray
    hp: np.ndarray
    choice: np.ndarray
    log_loss: np.ndarray

    def rows(self, index: np.ndarray) -> SurfaceData:
        return SurfaceData(
            self.log_axes[index], self.hp[index], self.choice[index], self.log_loss[index]
        )

    def columns(self, hp_index: list[int]) -> SurfaceData:
        return replace(self, hp=self.hp[:, hp_index])


@dataclass(frozen=True)
class Structure:
    """Which terms a surface has: the degree of ``g`` and whether ``h`` bends with ``z``."""

    degree: int
    bend: bool


def _poly(z: np.ndarray, degree: int) -> np.ndarray:
    """All monomials of ``z`` (n, k) up to ``degree``, constant first: (n, p)."""
    columns = [np.ones(len(z))]
    for d in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(z.shape[1]), d):
            columns.append(np.prod(z[:, list(combo)], axis=1))
    return np.column_stack(columns)


def _bend_features(z: np.ndarray) -> np.ndarray:
    """Second-order monomials of ``z`` (n, k(k+1)/2): how the bowl's centre may bend."""
    return _poly(z, 2)[:, 1 + z.shape[1] :]


@dataclass(frozen=True)
class ResponseSurface:
    """A fitted surface (see the module docstring); inputs are standardised internally."""

    structure: Structure
    coef: np.ndarray
    axes_mean: np.ndarray
    axes_scale: np.ndarray
    hp_mean: np.ndarray
    hp_scale: np.ndarray
    n_choice: int

    @property
    def n_hp(self) -> int:
        return len(self.hp_mean)

    def _z(self, log_axes: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(log_axes) - self.axes_mean) / self.axes_scale

    def _blocks(self) -> tuple[int, int, int]:
        """Sizes of the ``g``, ``h`` and ``h z`` blocks of ``coef``."""
        k = len(self.axes_mean)
        return _poly(np.zeros((1, k)), self.structure.degree).shape[1], self.n_hp, self.n_hp * k

    def _linear_in_h(self, z: np.ndarray) -> np.ndarray:
        """``b + W z (+ V z^2)`` in standardised units: (p, m)."""
        n_g, m, n_w = self._blocks()
        k = z.shape[1]
        b = self.coef[n_g : n_g + m]
        w = self.coef[n_g + m : n_g + m + n_w].reshape(m, k)
        slope = b[None, :] + z @ w.T
        if self.structure.bend:
            n_v = m * k * (k + 1) // 2
            start = len(self.coef) - self.n_choice - n_v
            v = self.coef[start : start + n_v].reshape(m, -1)
            slope = slope + _bend_features(z) @ v.T
        return slope

    def hessian(self) -> np.ndarray:
        """``Q`` (m, m) in standardised units."""
        n_g, m, n_w = self._blocks()
        start = n_g + m + n_w
        q = np.zeros((m, m))
        for (i, j), c in zip(_pairs(m), self.coef[start : start + len(_pairs(m))], strict=True):
            q[i, j] = q[j, i] = 2.0 * c if i == j else c
        return q

    def is_convex(self) -> bool:
        return self.n_hp == 0 or bool(np.linalg.eigvalsh(self.hessian()).min() > 0)

    def optimum(self, log_axes: np.ndarray, fixed: Mapping[int, float] | None = None) -> np.ndarray:
        """``h*`` (p, m) in transformed units at each row of ``log_axes`` (p, k).

        ``fixed`` maps columns to values (transformed units) held there: the others are
        then the bowl's bottom *given* those, ``h_F = -Q_FF^-1 (b_F + W_F z + Q_FU u)``.
        Where the learning rate's optimum moves with the batch size, this is the
        learning rate for the batch a prediction actually uses."""
        slope = self._linear_in_h(self._z(log_axes))
        hessian = self.hessian()
        if not fixed:
            h_std = -np.linalg.solve(hessian, slope.T).T
            return h_std * self.hp_scale + self.hp_mean
        held = np.array(sorted(fixed))
        free = np.array([j for j in range(self.n_hp) if j not in fixed], dtype=int)
        u = (np.array([fixed[j] for j in held]) - self.hp_mean[held]) / self.hp_scale[held]
        h_std = np.empty_like(slope)
        h_std[:, held] = u
        if free.size:
            rhs = slope[:, free] + hessian[np.ix_(free, held)] @ u
            h_std[:, free] = -np.linalg.solve(hessian[np.ix_(free, free)], rhs.T).T
        return h_std * self.hp_scale + self.hp_mean

    def choice_offsets(self) -> np.ndarray:
        """The choice offsets (q,): the loss change of each non-reference level."""
        return self.coef[len(self.coef) - self.n_choice :]

    def profile(self, log_axes: np.ndarray) -> np.ndarray:
        """Log-loss (p,) at the optimal hyperparameters (choices excluded)."""
        z = self._z(log_axes)
        n_g, _, _ = self._blocks()
        slope = self._linear_in_h(z)
        if self.n_hp == 0:
            return _poly(z, self.structure.degree) @ self.coef[:n_g]
        drop = 0.5 * np.einsum("pi,pi->p", slope, np.linalg.solve(self.hessian(), slope.T).T)
        return _poly(z, self.structure.degree) @ self.coef[:n_g] - drop


def _pairs(m: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(m) for j in range(i, m)]


def _design(z: np.ndarray, h: np.ndarray, choice: np.ndarray, structure: Structure):
    m = h.shape[1]
    blocks = [_poly(z, structure.degree), h, (h[:, :, None] * z[:, None, :]).reshape(len(z), -1)]
    blocks.append(np.column_stack([h[:, i] * h[:, j] for i, j in _pairs(m)]) if m else h)
    if structure.bend:
        bend = _bend_features(z)
        blocks.append((h[:, :, None] * bend[:, None, :]).reshape(len(z), -1))
    blocks.append(choice)
    return np.column_stack(blocks)


def n_coefficients(k: int, m: int, q: int, structure: Structure) -> int:
    design = _design(np.zeros((1, k)), np.zeros((1, m)), np.zeros((1, q)), structure)
    return design.shape[1]


def choose_structure(data: SurfaceData, *, level: float) -> tuple[Structure, bool]:
    """The surface to estimate optima with, and whether the bowls' centres bend with
    scale. ``g`` is cubic when there are enough points per coefficient, else quadratic;
    the optima are always straight in ``z`` (the rules' law). The bend is an F-test at
    ``level`` on extra ``h z^2`` terms: a diagnostic for non-monotone optima, not part of
    the estimate (the extra terms cost more variance than they remove bias). Raises
    NotEnoughDataError when even the smallest surface has too few points."""
    n, k = data.log_axes.shape
    m, q = data.hp.shape[1], data.choice.shape[1]
    cubic = Structure(degree=3, bend=False)
    degree = 3 if n >= POINTS_PER_COEF_CUBIC * n_coefficients(k, m, q, cubic) else 2
    base = Structure(degree=degree, bend=False)
    needed = MIN_POINTS_PER_COEF * n_coefficients(k, m, q, base)
    if n < needed:
        raise NotEnoughDataError(
            f"{n} successful runs cannot support a response surface with "
            f"{n_coefficients(k, m, q, base)} coefficients over {m} hyperparameters; "
            f"need at least {needed:.0f}"
        )
    bent = Structure(degree=degree, bend=True)
    if m == 0 or n < MIN_POINTS_PER_COEF * n_coefficients(k, m, q, bent):
        return base, False
    rss_base, p_base = _rss(data, base)
    rss_bent, p_bent = _rss(data, bent)
    dof = n - p_bent
    f_stat = ((rss_base - rss_bent) / (p_bent - p_base)) / max(rss_bent / dof, 1e-300)
    return base, bool(stats.f.sf(f_stat, p_bent - p_base, dof) < 1.0 - level)


def _standardise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    scale = values.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def _solve(data: SurfaceData, structure: Structure, weights: np.ndarray | None = None):
    axes_mean, axes_scale = _standardise(data.log_axes)
    hp_mean, hp_scale = _standardise(data.hp)
    z = (data.log_axes - axes_mean) / axes_scale
    design = _design(z, (data.hp - hp_mean) / hp_scale, data.choice, structure)
    root = np.ones(len(z)) if weights is None else np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * root[:, None], data.log_loss * root, rcond=None)
    surface = ResponseSurface(
        structure, coef, axes_mean, axes_scale, hp_mean, hp_scale, data.choice.shape[1]
    )
    return surface, design


def excess(surface: ResponseSurface, data: SurfaceData) -> np.ndarray:
    """Log-loss (n,) each run loses to the optimal hyperparameters at its own axes."""
    z = surface._z(data.log_axes)
    h_star = (surface.optimum(data.log_axes) - surface.hp_mean) / surface.hp_scale
    h_own = (data.hp - surface.hp_mean) / surface.hp_scale
    own = _design(z, h_own, data.choice, surface.structure) @ surface.coef
    return own - _design(z, h_star, data.choice, surface.structure) @ surface.coef


def coefficient_covariance(surface: ResponseSurface, data: SurfaceData) -> np.ndarray:
    """The sampling covariance of ``surface.coef`` fitted to ``data``, with the weights
    ``fit_surface`` gives the runs (recomputed from ``surface`` itself).

    A sandwich (HC1): ``B^-1 X' W R^2 W X B^-1``, ``B = X' W X``, ``R`` the residuals,
    scaled by ``n / (n - p)``. The weights say how far up a bowl's wall a run is, not how
    noisy it is, so the weighted-least-squares form ``s^2 B^-1`` (weights as inverse
    variances) would be wrong by a factor that differs per coefficient; and the
    residuals carry the quadratic's lack of fit far from the bowls' bottoms as well as
    the noise."""
    weights = _bowl_weights(surface, data)
    if weights is None:
        weights = np.ones(len(data.log_loss))
    _, design = _solve(data, surface.structure, weights)
    residual = data.log_loss - design @ surface.coef
    n, p = design.shape
    bread = np.linalg.pinv(design.T @ (design * weights[:, None]))
    scores = design * (weights * residual)[:, None]
    return bread @ (scores.T @ scores) @ bread * n / max(n - p, 1)


def _bowl_weights(surface: ResponseSurface, data: SurfaceData) -> np.ndarray | None:
    """Each run's weight ``1 / (1 + (excess / BOWL_SCALE)^2)`` by the log-loss it loses to
    ``surface``'s optimal hyperparameters (``fit_surface``); None while there is no bowl
    to weight towards (no hyperparameter, or a bowl that is not convex)."""
    if surface.n_hp == 0 or not surface.is_convex():
        return None
    lost = np.maximum(excess(surface, data), 0.0)
    return 1.0 / (1.0 + (lost / BOWL_SCALE) ** 2)


def _rss(data: SurfaceData, structure: Structure) -> tuple[float, int]:
    surface, design = _solve(data, structure)
    return float(np.sum((data.log_loss - design @ surface.coef) ** 2)), design.shape[1]


def fit_surface(data: SurfaceData, structure: Structure) -> ResponseSurface:
    """Least-squares surface with the given ``structure``, reweighted towards the bowls.

    A quadratic describes a bowl near its bottom; runs far up its walls (a learning
    rate 10x off) follow the bowl's true, non-quadratic shape and would bend the fit.
    After a plain fit, each run is weighted ``1 / (1 + (excess / BOWL_SCALE)^2)`` by the
    log-loss it loses to its optimal hyperparameters, and the fit repeated
    (``REWEIGHT_PASSES`` times; skipped while the bowl is not convex).
    """
    surface = _solve(data, structure)[0]
    for _ in range(REWEIGHT_PASSES):
        weights = _bowl_weights(surface, data)
        if weights is None:
            break
        surface = _solve(data, structure, weights)[0]
    return surface


@dataclass(frozen=True)
class Dropped:
    """A hyperparameter left out of the surface, and why (``dropped_hyperparameters``).

    ``kind``: ``"no effect"`` (leaving all its terms out changes the fit by no more
    than noise), ``"no bowl"`` (it matters, but its curvature is not significantly
    positive: the runs do not locate an optimum) or ``"saddle"`` (its curvature is
    significant, but the joint bowl with ``partners``, columns still in the surface, is
    not convex, and its curvature was the weakest). ``t``: its curvature's t-statistic
    when it was dropped.
    """

    column: int
    kind: Literal["no effect", "no bowl", "saddle"]
    t: float
    partners: tuple[int, ...] = ()


def dropped_hyperparameters(
    data: SurfaceData, structure: Structure, *, level: float
) -> list[Dropped]:
    """Columns of ``data.hp`` without a bowl the surface can use, in the order dropped.

    Dropped one at a time and refitted, until every remaining hyperparameter's own
    curvature is significantly positive at ``level`` and the joint bowl is convex: the
    least significant curvature first, and while the bowl is not convex, the weakest
    curvature among the pairs of hyperparameters that form a saddle. Each drop says which
    of the three reasons applied: a user told "flat" about the learning rate of a real
    study, whose loss depends on it more than on anything else, is told something false.
    """
    keep = list(range(data.hp.shape[1]))
    dropped: list[Dropped] = []
    threshold = stats.t.ppf(level, max(len(data.log_loss) - 1, 1))
    while keep:
        t_values = _curvature_t(data.columns(keep), structure)
        worst = int(np.argmin(t_values))
        if t_values[worst] < threshold:
            column, t = keep[worst], float(t_values[worst])
            matters = _has_effect(data, structure, keep, column, level=level)
            dropped.append(Dropped(column, "no bowl" if matters else "no effect", t))
            keep.pop(worst)
            continue
        surface = fit_surface(data.columns(keep), structure)
        if surface.is_convex():
            break
        # Of the hyperparameters in a saddle pair, the weakest curvature goes: not a
        # bystander with a proper bowl of its own.
        pairs = _saddle_pairs(surface.hessian())
        involved = sorted({i for pair in pairs for i in pair}) or list(range(len(keep)))
        worst = min(involved, key=lambda i: t_values[i])
        partners = [j for pair in pairs if worst in pair for j in pair if j != worst]
        partners = partners or [i for i in range(len(keep)) if i != worst]
        column, t = keep[worst], float(t_values[worst])
        dropped.append(Dropped(column, "saddle", t, tuple(keep[i] for i in sorted(partners))))
        keep.pop(worst)
    return dropped


def _has_effect(
    data: SurfaceData, structure: Structure, keep: list[int], column: int, *, level: float
) -> bool:
    """Whether leaving every term of ``column`` out of the surface over ``keep`` raises the
    residual sum of squares significantly (an F-test at ``level``)."""
    rss_with, p_with = _rss(data.columns(keep), structure)
    rss_without, p_without = _rss(data.columns([k for k in keep if k != column]), structure)
    dof = len(data.log_loss) - p_with
    if dof <= 0 or p_with <= p_without:
        return False
    f_stat = ((rss_without - rss_with) / (p_with - p_without)) / max(rss_with / dof, 1e-300)
    return bool(stats.f.sf(f_stat, p_with - p_without, dof) < 1.0 - level)


def _saddle_pairs(hessian: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of positions whose 2x2 bowl is not convex (empty when only a larger set
    of hyperparameters is)."""
    m = len(hessian)
    return [
        (i, j)
        for i in range(m)
        for j in range(i + 1, m)
        if np.linalg.eigvalsh(hessian[np.ix_([i, j], [i, j])]).min() <= 0
    ]


def _curvature_t(data: SurfaceData, structure: Structure) -> np.ndarray:
    """t-statistic (m,) of each hyperparameter's squared term (OLS standard errors)."""
    surface, design = _solve(data, structure)
    residual = data.log_loss - design @ surface.coef
    dof = max(len(residual) - design.shape[1], 1)
    sigma2 = float(residual @ residual) / dof
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    n_g, m, n_w = surface._blocks()
    start = n_g + m + n_w
    index = [start + p for p, (i, j) in enumerate(_pairs(m)) if i == j]
    se = np.sqrt(np.maximum(np.diag(cov)[index], 1e-300))
    return surface.coef[index] / se
