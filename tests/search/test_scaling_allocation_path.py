"""The allocation the hyperparameters' laws are read along when the surface's iso-FLOP
minima sit on the edge of the sizes tried and N*(C), D*(C) come from the runs: it must
be the N* a prediction at the same compute gives, whichever of the two laws is
supported."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from search.scaling.allocation import fit_allocation_law
from search.scaling.fitting import MAX_EDGE_FRACTION, _allocation_through_runs_path
from search.scaling.predict import _one_law_allocation
from search.scaling.rules import AllocationRules

COMPUTE = np.geomspace(1e15, 1e18, 12)
# D*(C) ~ C^0.6 with a little scatter, so N* = C / 6 D* grows as C^0.4.
TOKENS = 2e3 * COMPUTE**0.6 * np.exp(np.random.default_rng(0).normal(0.0, 0.05, COMPUTE.size))


def _inputs(edge_fraction: float):
    members = np.arange(COMPUTE.size)
    fit = SimpleNamespace(table=SimpleNamespace(compute=COMPUTE), seed=3, n_bootstrap=40)
    optima = SimpleNamespace(log_n_path=np.zeros(COMPUTE.size), edge_fraction=edge_fraction)
    return fit, members, SimpleNamespace(optima=optima)


def _tokens_only() -> AllocationRules:
    law = fit_allocation_law(COMPUTE, TOKENS, name="tokens", seed=0, n_bootstrap=100)
    return AllocationRules(tokens=law, n_params_reason="n_params*(C) is flat or falling")


def test_with_only_the_tokens_law_the_path_is_c_over_6_d():
    fit, members, est = _inputs(edge_fraction=1.0)
    allocation = _tokens_only()
    path = _allocation_through_runs_path(fit, members, est, allocation, None)
    assert path is not None
    log_n, draws = path
    assert draws.shape == (fit.n_bootstrap, COMPUTE.size)
    for i, compute in enumerate(COMPUTE):
        n_star, _, _ = _one_law_allocation(allocation, float(compute))
        assert math.exp(log_n[i]) == pytest.approx(n_star.estimate, rel=1e-9)
    # The draws spread around the path: N*'s uncertainty is D*'s, mirrored.
    assert np.all(np.abs(np.median(draws, axis=0) - log_n) < 0.1)
    assert np.all(draws.std(axis=0) > 0.0)


def test_no_path_where_the_parametric_law_gives_the_allocation_or_nothing_is_on_the_edge():
    fit, members, est = _inputs(edge_fraction=1.0)
    allocation = _tokens_only()
    # A prediction with L(N, D) takes its allocation, which the optima were read along.
    assert _allocation_through_runs_path(fit, members, est, allocation, object()) is None
    assert _allocation_through_runs_path(fit, members, est, AllocationRules(), None) is None
    fit, members, est = _inputs(edge_fraction=MAX_EDGE_FRACTION / 2)
    assert _allocation_through_runs_path(fit, members, est, allocation, None) is None
