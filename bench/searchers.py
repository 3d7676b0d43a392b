"""The methods compared, behind one small interface: ask n, tell, refuse.

Each peer gets its fairest setup on the same box (``bench.problem.bench_space``):
- ``random``: Optuna's RandomSampler, log-uniform where the box is logarithmic;
- ``tpe``: Optuna TPE on the loss, multivariate, with the constant liar for the 8 trials
  in flight (Optuna's advice for parallel TPE);
- ``tpe-mo``: the same on (loss, log cost), both minimised;
- ``gp``: Optuna's GPSampler on the loss (it accounts for running trials itself);
- ``gp-mo``: GPSampler on (loss, log cost) (log EHVI; qLogEHVI with running trials);
- ``ours``: ``search.engine.ParetoSearch`` with default settings, told the study's
  limits (``search.pacing.StudyLimits``: budget, trial cap, trials in flight), as the
  service tells it.

A method's reported front (``front()``) is its own estimate where it has one (ours:
``ParetoSearch.front()``, model-estimated losses, repeats merged); None means the front
of the observed trials, which is what Optuna's samplers offer.

Every Optuna study starts with the start point enqueued, as ours starts at its center.
Optuna has no log-odds scale: the warmup fraction, a small probability, is searched
log-uniformly; batch sizes are powers of two via an integer exponent. A refused trial
(the launch guard) is told to Optuna as FAIL, which its samplers ignore; ours forgets it.
A failed trial (OOM, divergence) is told as FAIL to Optuna and as failed to ours.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from bench.problem import bench_space
from search.space import ChoiceParam, Pow2Param
from workers.objectives.testbed import START_PARAMS

PEERS = ("random", "tpe", "tpe-mo", "gp", "gp-mo")
METHODS = (*PEERS, "ours")


class Searcher(Protocol):
    """What the benchmark loop drives; ``handle`` is the method's own trial token."""

    def ask(self, n: int) -> list[tuple[Any, dict[str, Any]]]: ...

    def tell(self, handle: Any, *, loss: float | None, cost: float, failed: bool) -> None: ...

    def refuse(self, handle: Any) -> None: ...

    def front(self) -> list[tuple[dict[str, Any], float, float]] | None: ...


def make_searcher(
    method: str,
    *,
    seed: int,
    engine_settings: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    box: str = "practitioner",
) -> Searcher:
    """``engine_settings``: SearchSettings fields for our engine; ``limits``: the study's
    StudyLimits fields, told to our engine (peers are not told, as Optuna has no such
    notion; the launch guard holds everyone to the budget)."""
    if method == "ours":
        return EngineSearcher(seed=seed, settings=engine_settings, limits=limits, box=box)
    if method in PEERS:
        return OptunaSearcher(method, seed=seed, box=box)
    raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")


class EngineSearcher:
    """Our engine, searching the bench box centred on the start point, told the
    study's limits."""

    def __init__(
        self,
        *,
        seed: int,
        settings: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        box: str = "practitioner",
    ) -> None:
        from search.engine import ParetoSearch
        from search.pacing import StudyLimits
        from search.settings import SearchSettings

        self.engine = ParetoSearch(
            bench_space(box),
            SearchSettings(**(settings or {}), seed=seed),
            limits=StudyLimits(**(limits or {})),
        )

    def ask(self, n: int) -> list[tuple[Any, dict[str, Any]]]:
        return [(s.suggestion_id, s.params) for s in self.engine.ask(n)]

    def tell(self, handle: Any, *, loss: float | None, cost: float, failed: bool) -> None:
        self.engine.tell(handle, loss, cost, failed=failed)

    def refuse(self, handle: Any) -> None:
        self.engine.forget(handle)

    def front(self) -> list[tuple[dict[str, Any], float, float]]:
        return [(o.params, o.loss, o.cost) for o in self.engine.front()]


class OptunaSearcher:
    """An Optuna study driven with ask-and-tell on the bench box."""

    def __init__(self, method: str, *, seed: int, box: str = "practitioner") -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._multi_objective = method.endswith("-mo")
        self._distributions, self._encoders = _optuna_box(box)
        directions = ["minimize", "minimize"] if self._multi_objective else ["minimize"]
        self.study = optuna.create_study(directions=directions, sampler=_sampler(method, seed))
        self.study.enqueue_trial(
            {key: encode(START_PARAMS) for key, encode in self._encoders.items()}
        )

    def ask(self, n: int) -> list[tuple[Any, dict[str, Any]]]:
        out = []
        for _ in range(n):
            trial = self.study.ask(self._distributions)
            out.append((trial, _decode(trial.params)))
        return out

    def tell(self, handle: Any, *, loss: float | None, cost: float, failed: bool) -> None:
        from optuna.trial import TrialState

        if failed:
            self.study.tell(handle, state=TrialState.FAIL)
        elif self._multi_objective:
            self.study.tell(handle, [loss, math.log(cost)])
        else:
            self.study.tell(handle, loss)

    def refuse(self, handle: Any) -> None:
        from optuna.trial import TrialState

        self.study.tell(handle, state=TrialState.FAIL)

    def front(self) -> None:
        return None  # the observed trials' front


def _sampler(method: str, seed: int):
    import optuna

    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method.startswith("tpe"):
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    return optuna.samplers.GPSampler(seed=seed)


def _optuna_box(box: str = "practitioner"):
    """Optuna distributions of a bench box, and encoders from our params to them."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    distributions: dict[str, Any] = {}
    encoders: dict[str, Any] = {}
    for param in bench_space(box).params:
        if isinstance(param, ChoiceParam):
            distributions[param.name] = CategoricalDistribution(param.choices)
            encoders[param.name] = lambda p, name=param.name: p[name]
        elif isinstance(param, Pow2Param):
            key = f"log2_{param.name}"
            low, high = int(math.log2(param.min)), int(math.log2(param.max))
            distributions[key] = IntDistribution(low, high)
            encoders[key] = lambda p, name=param.name: int(math.log2(p[name]))
        else:
            distributions[param.name] = FloatDistribution(param.min, param.max, log=True)
            encoders[param.name] = lambda p, name=param.name: float(p[name])
    return distributions, encoders


def _decode(optuna_params: dict[str, Any]) -> dict[str, Any]:
    params = {}
    for key, value in optuna_params.items():
        if key.startswith("log2_"):
            params[key.removeprefix("log2_")] = 2 ** int(value)
        else:
            params[key] = value
    return {name: params[name] for name in START_PARAMS}
