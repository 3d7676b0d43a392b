"""Gaussian-process surrogates: fitted with BoTorch/GPyTorch, evaluated in numpy.

Notation (as in the rest of ``search``):
- ``x_train`` (n, d), ``x_query`` (q, d): points in the engine's internal space;
- ``y``: the modelled quantity in its own units (a loss, or a log cost);
- ``z``: ``y`` standardised with the training mean and standard deviation.

Hyperparameters are fitted by maximising the exact marginal likelihood with BoTorch's
``fit_gpytorch_mll`` (L-BFGS-B to convergence), warm-started from the previous fit.
Predictions, and the "kriging believer" fantasies used for parallel asks, run in
numpy from the fitted hyperparameters: a Cholesky factor of at most a few hundred
points is cheaper than a torch forward pass, and it keeps the engine deterministic:
two engines holding the same hyperparameters and data predict bit-identically.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.exceptions.errors import ModelFittingError as BotorchModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from gpytorch.constraints import GreaterThan, Interval
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean, LinearMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from linear_operator.utils.errors import NanError, NotPSDError
from scipy.linalg import cho_solve, cholesky, solve_triangular

from search.errors import ModelFittingError, NotEnoughDataError
from search.threads import single_threaded

_SQRT5 = math.sqrt(5.0)
_MIN_NOISE = 1e-6
# L-BFGS-B stops when an iteration improves the per-point marginal log likelihood by
# less than this (relative). SciPy's default (2.2e-9) spends most of its iterations
# crawling along flat lengthscale directions that change no prediction.
_FTOL = 1e-7
# What a failed fit may raise; anything else is a bug and propagates.
_RETRIED_ERRORS = (BotorchModelFittingError, NotPSDError, NanError, RuntimeError, ValueError)


@dataclass(frozen=True)
class GPHyperparameters:
    """A Matern-5/2 ARD GP on standardised outputs: what a fit produces.

    ``lengthscales`` (d,) are in internal units; ``outputscale``, ``noise`` and
    ``mean`` are in standardised-output units. ``slopes`` (d,), when present, make the
    prior mean linear, ``mean + slopes @ x``: log cost is close to linear in the
    log-scaled size parameters, and a constant mean would let far-away configurations
    look cheap by reverting to the average cost.
    """

    lengthscales: tuple[float, ...]
    outputscale: float
    noise: float
    mean: float
    slopes: tuple[float, ...] | None = None

    def prior_mean(self, x: np.ndarray) -> np.ndarray:
        """(q,) prior mean at (q, d) points, in standardised-output units."""
        if self.slopes is None:
            return np.full(x.shape[0], self.mean)
        return self.mean + x @ np.asarray(self.slopes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lengthscales": list(self.lengthscales),
            "outputscale": self.outputscale,
            "noise": self.noise,
            "mean": self.mean,
            "slopes": None if self.slopes is None else list(self.slopes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPHyperparameters:
        return cls(
            lengthscales=tuple(float(v) for v in data["lengthscales"]),
            outputscale=float(data["outputscale"]),
            noise=float(data["noise"]),
            mean=float(data["mean"]),
            slopes=None if data.get("slopes") is None else tuple(map(float, data["slopes"])),
        )

    @classmethod
    def default(cls, dim: int) -> GPHyperparameters:
        """The starting point of a first constant-mean fit: a smooth function of unit
        variance (linear-mean fits start from least squares, ``_linear_start``)."""
        return cls((1.5,) * dim, outputscale=1.0, noise=0.05, mean=0.0)


def matern52(x_a: np.ndarray, x_b: np.ndarray, hyper: GPHyperparameters) -> np.ndarray:
    """Kernel matrix (a, b) of the scaled Matern-5/2 kernel."""
    scale = np.asarray(hyper.lengthscales)
    a, b = x_a / scale, x_b / scale
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    r = np.sqrt(np.maximum(sq, 0.0))
    return hyper.outputscale * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r * r) * np.exp(-_SQRT5 * r)


class GPPredictor:
    """Exact GP posterior of ``y`` given training data and fixed hyperparameters."""

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        hyper: GPHyperparameters,
        *,
        y_mean: float,
        y_std: float,
        chol: np.ndarray | None = None,
    ) -> None:
        self.x_train = np.asarray(x_train, dtype=float)
        self.y_train = np.asarray(y_train, dtype=float)
        self.hyper = hyper
        self.y_mean = y_mean
        self.y_std = y_std
        if chol is None:
            gram = matern52(self.x_train, self.x_train, hyper)
            gram[np.diag_indices_from(gram)] += hyper.noise + 1e-9
            chol = cholesky(gram, lower=True)
        self._chol = chol
        z = (self.y_train - y_mean) / y_std - hyper.prior_mean(self.x_train)
        self._alpha = cho_solve((chol, True), z)

    @property
    def noise_std(self) -> float:
        """Observation-noise standard deviation, in ``y`` units."""
        return math.sqrt(self.hyper.noise) * self.y_std

    def predict_mean(self, x_query: np.ndarray) -> np.ndarray:
        """Posterior mean only (q,): skips the O(n^2 q) variance solve."""
        x_query = np.atleast_2d(x_query)
        cross = matern52(self.x_train, x_query, self.hyper)  # (n, q)
        return self.y_mean + self.y_std * (self.hyper.prior_mean(x_query) + cross.T @ self._alpha)

    def predict(self, x_query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent ``y`` at (q, d) points."""
        x_query = np.atleast_2d(x_query)
        cross = matern52(self.x_train, x_query, self.hyper)  # (n, q)
        mean_z = self.hyper.prior_mean(x_query) + cross.T @ self._alpha
        v = solve_triangular(self._chol, cross, lower=True)
        var_z = np.maximum(self.hyper.outputscale - (v * v).sum(0), 1e-12)
        return self.y_mean + self.y_std * mean_z, self.y_std * np.sqrt(var_z)

    def leave_one_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Each training point's predictive mean and std (``y`` units, noise included)
        given all the *other* training points: the closed form of Rasmussen & Williams
        (2006) eq. 5.12, from the Cholesky factor already at hand."""
        eye = np.eye(self._chol.shape[0])
        inverse_diag = (solve_triangular(self._chol, eye, lower=True) ** 2).sum(0)
        z_train = (self.y_train - self.y_mean) / self.y_std
        mean_z = z_train - self._alpha / inverse_diag
        return self.y_mean + self.y_std * mean_z, self.y_std / np.sqrt(inverse_diag)

    def condition_on(self, x_new: np.ndarray, y_new: np.ndarray) -> GPPredictor:
        """This posterior updated with more observations, hyperparameters unchanged.

        A block update of the Cholesky factor: O(n^2 k) for k new points instead of the
        O(n^3) refactorisation. Used with ``y_new`` = the posterior mean (kriging
        believer) to account for pending trials.
        """
        x_new = np.atleast_2d(np.asarray(x_new, dtype=float))
        cross = matern52(self.x_train, x_new, self.hyper)  # (n, k)
        block = solve_triangular(self._chol, cross, lower=True)  # (n, k)
        corner = matern52(x_new, x_new, self.hyper) - block.T @ block
        corner[np.diag_indices_from(corner)] += self.hyper.noise + 1e-9
        n, k = block.shape
        chol = np.zeros((n + k, n + k))
        chol[:n, :n] = self._chol
        chol[n:, :n] = block.T
        chol[n:, n:] = cholesky(corner, lower=True)
        return GPPredictor(
            np.vstack([self.x_train, x_new]),
            np.concatenate([self.y_train, np.asarray(y_new, dtype=float)]),
            self.hyper,
            y_mean=self.y_mean,
            y_std=self.y_std,
            chol=chol,
        )


def standardisation(y: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation used to standardise ``y`` (std 1 when constant)."""
    mean = float(np.mean(y))
    std = float(np.std(y))
    return mean, (std if std > 1e-12 * max(1.0, abs(mean)) else 1.0)


def fit_gp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    warm_start: GPHyperparameters | None,
    max_iter: int,
    retries: int,
    linear_mean: bool = False,
) -> GPPredictor:
    """Fit GP hyperparameters by maximum marginal likelihood and return the posterior.

    The first attempt starts from ``warm_start`` (the last fit's result), later ones
    from the defaults with growing noise. Raises ``ModelFittingError`` after
    ``retries`` further attempts, ``NotEnoughDataError`` for fewer than two points.
    """
    x_train = np.asarray(x_train, dtype=float)
    y_train = np.asarray(y_train, dtype=float)
    if x_train.shape[0] < 2:
        raise NotEnoughDataError(f"a GP needs at least 2 points, got {x_train.shape[0]}")
    if not (np.isfinite(x_train).all() and np.isfinite(y_train).all()):
        raise ValueError("GP training data must be finite (drop failed trials first)")
    y_mean, y_std = standardisation(y_train)
    z = (y_train - y_mean) / y_std
    dim = x_train.shape[1]
    default = _linear_start(x_train, z) if linear_mean else GPHyperparameters.default(dim)
    starts = [warm_start or default]
    starts += [_with_noise(default, 0.05 * 4.0**attempt) for attempt in range(1, retries + 1)]
    errors: list[str] = []
    for start in starts:
        try:
            hyper = _fit_hyperparameters(x_train, z, start=start, max_iter=max_iter)
            return GPPredictor(x_train, y_train, hyper, y_mean=y_mean, y_std=y_std)
        except _RETRIED_ERRORS as err:
            errors.append(f"{type(err).__name__}: {err}")
    raise ModelFittingError(
        f"GP fit failed after {len(starts)} attempts on {x_train.shape[0]} points: "
        + "; ".join(errors)
    )


def _linear_start(x_train: np.ndarray, z: np.ndarray) -> GPHyperparameters:
    """Start a linear-mean fit at the least-squares plane, the GP modelling what is left:
    the marginal likelihood is flat in the lengthscales while the plane is still being
    found, so starting on it saves most of the optimizer's iterations."""
    design = np.hstack([np.ones((x_train.shape[0], 1)), x_train])
    coef = np.linalg.lstsq(design, z, rcond=None)[0]
    residual_var = float(np.var(z - design @ coef))
    return GPHyperparameters(
        lengthscales=(1.5,) * x_train.shape[1],
        outputscale=min(max(residual_var, 0.01), 1.0),
        noise=min(max(0.1 * residual_var, 1e-4), 0.5),
        mean=float(coef[0]),
        slopes=tuple(float(c) for c in coef[1:]),
    )


def _with_noise(hyper: GPHyperparameters, noise: float) -> GPHyperparameters:
    return dataclasses.replace(hyper, noise=noise)


def _build_model(x: torch.Tensor, z: torch.Tensor, *, linear_mean: bool) -> SingleTaskGP:
    """Matern-5/2 ARD kernel with weak priors suited to internal units (1 = one scale)."""
    dim = x.shape[-1]
    kernel = ScaleKernel(
        MaternKernel(
            nu=2.5,
            ard_num_dims=dim,
            lengthscale_prior=LogNormalPrior(math.log(1.5) + 0.25 * math.log(dim), 1.0),
            lengthscale_constraint=Interval(0.02, 200.0),
        ),
        outputscale_prior=GammaPrior(2.0, 1.0),
        outputscale_constraint=Interval(1e-5, 50.0),
    )
    likelihood = GaussianLikelihood(
        noise_prior=LogNormalPrior(math.log(0.02), 1.5),
        noise_constraint=GreaterThan(_MIN_NOISE),
    )
    mean = LinearMean(dim) if linear_mean else ConstantMean()
    return SingleTaskGP(
        x, z, likelihood=likelihood, covar_module=kernel, mean_module=mean, outcome_transform=None
    )


def _fit_hyperparameters(
    x_train: np.ndarray, z: np.ndarray, *, start: GPHyperparameters, max_iter: int
) -> GPHyperparameters:
    x = torch.as_tensor(x_train, dtype=torch.float64)
    y = torch.as_tensor(z, dtype=torch.float64).unsqueeze(-1)
    with warnings.catch_warnings(), single_threaded():
        # Internal-space inputs are deliberately not scaled to the unit cube, and an
        # L-BFGS stop at the iteration cap still leaves a usable, improved fit.
        warnings.simplefilter("ignore")
        model = _build_model(x, y, linear_mean=start.slopes is not None)
        _initialise(model, start)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        fit_gpytorch_mll(
            mll,
            optimizer_kwargs={"options": {"maxiter": max_iter, "ftol": _FTOL}},
            max_attempts=1,
            warning_handler=lambda _w: True,
        )
    return _extract(model)


def _initialise(model: SingleTaskGP, start: GPHyperparameters) -> None:
    lengthscale = torch.tensor(start.lengthscales, dtype=torch.float64).clamp(0.03, 150.0)
    model.covar_module.base_kernel.lengthscale = lengthscale
    model.covar_module.outputscale = min(max(start.outputscale, 2e-5), 40.0)
    model.likelihood.noise = max(start.noise, 2 * _MIN_NOISE)
    if start.slopes is None:
        model.mean_module.constant.data.fill_(start.mean)
    else:
        model.mean_module.bias.data.fill_(start.mean)
        model.mean_module.weights.data.copy_(torch.tensor(start.slopes).reshape(-1, 1))


def _extract(model: SingleTaskGP) -> GPHyperparameters:
    mean = model.mean_module
    linear = isinstance(mean, LinearMean)
    with torch.no_grad():
        lengthscales = model.covar_module.base_kernel.lengthscale.reshape(-1).tolist()
        hyper = GPHyperparameters(
            lengthscales=tuple(float(v) for v in lengthscales),
            outputscale=float(model.covar_module.outputscale.item()),
            noise=float(model.likelihood.noise.reshape(-1)[0].item()),
            mean=float(mean.bias.item() if linear else mean.constant.item()),
            slopes=tuple(mean.weights.reshape(-1).tolist()) if linear else None,
        )
    values = [
        *hyper.lengthscales,
        hyper.outputscale,
        hyper.noise,
        hyper.mean,
        *(hyper.slopes or ()),
    ]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"fit produced non-finite hyperparameters {hyper}")
    return hyper
