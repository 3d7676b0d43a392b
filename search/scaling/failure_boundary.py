"""Where the study's runs fail, and a prediction held on the safe side of it.

A configuration extrapolated 100x can be past the point where training diverges even
when no law says so: a learning rate that was the best observed at the top of a study
is too high for a model ten times larger, and a batch that was too small there is
smaller still against its optimum. Of 48 engine studies of the testbed, 11 predicted a
100x configuration that diverges, all with noise at 3% of the reducible loss. The
study's own failed runs draw that boundary: runs diverge
past a learning rate that moves with model size, tokens and batch, a line in their
logs. So a logistic model of failure, linear in every numeric parameter in its law's
space (``ln``, ``log2``, ``logit``; ``search.scaling.transforms``), is fitted to all
runs, failed and successful. Held inside it, 10 of those 11 configurations train
(docs/notes/benchmark-history.md, "Held-out engine studies: the wild resamples and
the failure boundary").

A prediction the model puts past the boundary (failure more likely than not) has the
one hyperparameter that moves the boundary most (largest standardised coefficient,
axes and the size map's shape parameters excluded: those are set by the allocation) set
to where the model gives ``SAFE_PROBABILITY``, inside its declared limits, and says so;
where even its limit leaves failure more likely than not, nothing moves and the warning
says that instead (``search.scaling.predict``).

Failed runs usually lie in a region no successful run reaches (past the divergence
limit), so the data are separable and plain maximum likelihood has no finite answer; a
small penalty on the standardised slopes keeps them finite (the engine's failure model
fits its trend the same way, ``search.failure.logistic_regression``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from search.failure import logistic, logistic_regression
from search.scaling.transforms import forward, inverse, transform_of
from search.space import SearchSpace
from search.types import Observation

# Fewer failed (or successful) runs than this cannot place a boundary.
MIN_RUNS_EACH_SIDE = 5
# Penalty on the standardised slopes (half this times their sum of squares, as
# ``search.failure.logistic_regression`` takes it): finite coefficients on separable
# data, a boundary set by the runs nearest it. 0.2 held 9 of 9 failing predictions at
# one false alarm on 48 engine studies; 2 missed two.
PENALTY = 0.2
# A prediction past the boundary is moved to where failure has this probability.
SAFE_PROBABILITY = 0.05
# A parameter whose spread over the runs is under this share of its size did not vary.
_CONSTANT = 1e-9


class FailureBoundary(BaseModel):
    """``P(fail) = 1 / (1 + exp(-(coef[0] + sum_j coef[j+1] * z_j)))`` with ``z_j`` the
    parameter ``names[j]`` in its ``transforms[j]`` space, standardised by ``mean`` and
    ``scale``; fitted to ``n_runs`` runs of which ``n_failed`` failed. JSON-able."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    names: list[str]
    transforms: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    n_runs: int
    n_failed: int

    def logit(self, params: Mapping[str, Any]) -> float:
        columns = zip(self.names, self.transforms, self.mean, self.scale, strict=True)
        z = [(float(forward(t, params[name])) - m) / s for name, t, m, s in columns]
        return float(self.coef[0] + np.dot(self.coef[1:], z))

    def probability(self, params: Mapping[str, Any]) -> float:
        """P(fail) of one configuration (every name in ``names`` present)."""
        return float(logistic(np.array(self.logit(params))))

    def covers(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` hold a usable value of every parameter the model reads."""
        return all(isinstance(params.get(name), int | float) for name in self.names)

    def strongest(self, movable: Sequence[str]) -> str | None:
        """The parameter among ``movable`` whose standardised coefficient is largest in
        size (None when the model reads none of them, or none moves it)."""
        coefs = zip(self.names, self.coef[1:], strict=True)
        weights = {name: abs(c) for name, c in coefs if name in movable and c != 0.0}
        return max(weights, key=weights.__getitem__) if weights else None

    def value_at(self, params: Mapping[str, Any], name: str, probability: float) -> float:
        """The value of ``name`` at which failure has ``probability``, the others fixed."""
        j = self.names.index(name)
        coef = self.coef[j + 1]
        rest = self.logit(params) - coef * (
            (float(forward(self.transforms[j], params[name])) - self.mean[j]) / self.scale[j]
        )
        z = (math.log(probability / (1.0 - probability)) - rest) / coef
        return float(inverse(self.transforms[j], z * self.scale[j] + self.mean[j]))


def fit_failure_boundary(
    observations: Sequence[Observation], space: SearchSpace
) -> tuple[FailureBoundary | None, str | None]:
    """The boundary over the space's numeric parameters (each in its law's space) from
    every observation, or None with the reason when too few runs fail (or succeed)."""
    failed = np.array([bool(o.failed) for o in observations])
    n_failed, n_ok = int(failed.sum()), int((~failed).sum())
    if min(n_failed, n_ok) < MIN_RUNS_EACH_SIDE:
        return None, (
            f"{n_failed} failed and {n_ok} successful runs; a failure boundary needs at "
            f"least {MIN_RUNS_EACH_SIDE} of each"
        )
    pairs = [(p.name, transform_of(p)) for p in space.params if p.kind != "choice"]
    x = np.column_stack([forward(t, [o.params[n] for o in observations]) for n, t in pairs])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    # A parameter the runs did not vary says nothing of where they fail, and its
    # standardised value at a target would be a ratio of rounding errors.
    varied = scale > _CONSTANT * np.maximum(1.0, np.abs(mean))
    x, mean, scale = x[:, varied], mean[varied], scale[varied]
    names = [n for (n, _), keep in zip(pairs, varied, strict=True) if keep]
    transforms = [t for (_, t), keep in zip(pairs, varied, strict=True) if keep]
    coef = logistic_regression((x - mean) / scale, failed, penalty=PENALTY)
    assert coef is not None  # both outcomes were seen
    boundary = FailureBoundary(
        names=names,
        transforms=list(transforms),
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=coef.tolist(),
        n_runs=len(observations),
        n_failed=n_failed,
    )
    return boundary, None
