"""The testbed's ground truth: a simulated LM training world whose optima are known.

The true loss surface, its optima and true Pareto front, the cost model and the noise
scales, all set by ``TestbedConfig``. ``workers.objectives.testbed`` runs trials against
it; tests and benchmarks read the truth from here. A trial's loss follows Chinchilla's
parametric law (Hoffmann et al. 2022, arXiv 2203.15556, eq. 2 and its fitted
coefficients)

    L_chin(N, D) = E + A / N^alpha + B / D^beta

for N (non-embedding) parameters and D training tokens, multiplied by ``1 + P`` where P
sums penalties for hyperparameters away from their optimum. The optimal learning rate
and batch size follow the "step law" of Li et al. 2025, "Predictable Scale: Part I",
arXiv 2503.04715 (eq. 4 and 5):

    lr_opt(N, D) = 1.79 N^-0.713 D^0.307        B_opt(D) = 0.58 D^0.571   (tokens)

Penalty terms (each a relative loss increase; ``u`` denotes a squared distance):
- learning rate: ``lr_penalty * ln(lr / lr_opt_at_batch)^2``, where the optimum moves with
  the batch actually used, ``lr_opt_at_batch = lr_opt * (batch_tokens / B_opt)^lr_batch_exp``
  (a ridge, as in real runs; it does not move the joint optimum); with ``lr_skew = k``
  not 0 the square ``u^2`` becomes ``2 (exp(k u) - 1 - k u) / k^2``, the same near the
  optimum but rising exponentially above it and only linearly below (real runs' loss
  climbs faster towards divergence than below the optimum);
- batch size: ``batch_penalty * ln(batch_tokens / B_opt)^2``;
- too few optimizer steps (``steps = D / batch_tokens``):
  ``steps_penalty * max(0, ln(min_steps / steps))^2``;
- warmup fraction: ``warmup_penalty * (logit(w) - logit(w_opt))^2``;
- weight decay: ``weight_decay_penalty * ln(wd / wd_opt)^2``;
- schedule: a fixed penalty per choice (cosine is worse than WSD by default).

Failures: the run diverges when the learning rate exceeds ``divergence_lr_factor`` times
``lr_opt_at_batch`` (it pays for the fraction of training done before diverging), and runs
out of memory when ``n_params * batch_tokens > oom_limit`` (it pays ``oom_cost_seconds``).

Cost, in GPU-seconds: ``6 N D`` FLOPs at ``peak_flops * utilisation`` where utilisation
grows with the batch, ``max_utilisation * b / (b + half_utilisation_batch_tokens)`` for b
batch tokens (small batches underuse the GPU), times lognormal noise of mean 1
(``Testbed.sample_cost``). The observed loss carries Gaussian noise of sd
``loss_noise_std + loss_noise_share * (L_chin(N, D_seen) - E)``: a fixed part and a share
of the reducible loss at the tokens seen so far (``Testbed.loss_noise_sd``).

``batch_size`` counts sequences of ``seq_len`` tokens (1024 by default); every law above
is written in tokens, ``batch_tokens = batch_size * seq_len``.

Ground truth, for tests and benchmarks: ``Testbed.noiseless_loss``, ``expected_cost``,
``optimal_hparams``, ``pareto_loss`` (the true front L*(cost)), ``pareto_optimum`` and
``compute_optimal``. numpy only, so it imports fast.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

__all__ = ["PARAM_NAMES", "Testbed", "TestbedConfig", "TestbedError"]

# The parameters of every configuration the testbed evaluates.
PARAM_NAMES = (
    "n_params",
    "tokens",
    "learning_rate",
    "batch_size",
    "warmup_fraction",
    "weight_decay",
    "schedule",
)


class TestbedError(ValueError):
    """A testbed configuration or trial parameters that cannot be evaluated."""

    __test__ = False  # not a pytest test class, despite the name


@dataclass(frozen=True)
class TestbedConfig:
    """Every constant of the ground truth; replace fields to get another world.

    Units: ``n_params`` parameters, ``tokens`` tokens, batch sizes in sequences of
    ``seq_len`` tokens unless named ``*_tokens``, costs in GPU-seconds, FLOPs per second.
    """

    __test__ = False

    # Chinchilla law, Hoffmann et al. 2022 (approach 3 fit).
    loss_e: float = 1.69
    loss_a: float = 406.4
    loss_b: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28
    # Step law, Li et al. 2025 (arXiv 2503.04715): lr_opt = c N^a D^b, B_opt = c N^a D^b tokens.
    lr_coef: float = 1.79
    lr_n_exp: float = -0.713
    lr_d_exp: float = 0.307
    batch_coef: float = 0.58
    batch_n_exp: float = 0.0
    batch_d_exp: float = 0.571
    lr_batch_exp: float = 0.5
    seq_len: int = 1024
    # Optima of the other hyperparameters (weight decay may scale: coef N^a D^b).
    warmup_opt: float = 0.05
    weight_decay_coef: float = 0.03
    weight_decay_n_exp: float = 0.0
    weight_decay_d_exp: float = 0.0
    # Penalty weights: relative loss increase per squared distance (see module docstring).
    lr_penalty: float = 0.02
    lr_skew: float = 0.0
    batch_penalty: float = 0.015
    warmup_penalty: float = 0.004
    weight_decay_penalty: float = 0.005
    min_steps: float = 500.0
    steps_penalty: float = 0.05
    schedule_penalties: tuple[tuple[str, float], ...] = (("cosine", 0.01), ("wsd", 0.0))
    # Failures.
    divergence_lr_factor: float = 4.0
    divergence_at_fraction: float = 0.1
    oom_limit: float = 4e15
    oom_cost_seconds: float = 30.0
    # Noise: absolute std of the observed loss, plus a share of the reducible loss
    # L_chin(N, D) - E; sigma of the lognormal cost factor (mean 1).
    loss_noise_std: float = 0.01
    loss_noise_share: float = 0.0
    cost_noise_sigma: float = 0.05
    # Hardware: an A100's dense bf16 peak; utilisation saturates with the batch.
    peak_flops: float = 312e12
    max_utilisation: float = 0.5
    half_utilisation_batch_tokens: float = 8192.0
    # The domain searched (and over which the true front is taken).
    n_params_min: float = 1e6
    n_params_max: float = 1e10
    tokens_min: float = 1e7
    tokens_max: float = 1e11
    batch_size_min: int = 1
    batch_size_max: int = 16384

    def __post_init__(self) -> None:
        positive = [f.name for f in fields(self) if f.name not in _SIGNED_FIELDS]
        for name in positive:
            value = getattr(self, name)
            if name == "schedule_penalties":
                self._check_schedules(value)
            elif not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise TestbedError(f"TestbedConfig.{name} must be finite and >= 0, got {value!r}")
        for name in _SIGNED_FIELDS:
            if not math.isfinite(getattr(self, name)):
                raise TestbedError(f"TestbedConfig.{name} must be finite")
        if not 0.0 < self.warmup_opt < 1.0:
            raise TestbedError(f"warmup_opt must lie in (0, 1), got {self.warmup_opt}")
        for low, high in _RANGES:
            if not 0 < getattr(self, low) < getattr(self, high):
                raise TestbedError(f"need 0 < {low} < {high}")
        strictly = ("loss_a", "loss_b", "alpha", "beta", "peak_flops", "seq_len")
        if min(getattr(self, name) for name in strictly) <= 0:
            raise TestbedError(f"{', '.join(strictly)} must be > 0")
        for name in ("max_utilisation", "divergence_at_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise TestbedError(f"{name} must lie in (0, 1], got {getattr(self, name)}")

    @staticmethod
    def _check_schedules(value: Any) -> None:
        names = [name for name, _ in value]
        if not names or len(set(names)) != len(names):
            raise TestbedError("schedule_penalties needs unique (name, penalty) pairs")
        if any(not math.isfinite(p) or p < 0 for _, p in value):
            raise TestbedError("schedule penalties must be finite and >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (schedule penalties as a mapping)."""
        out = asdict(self)
        out["schedule_penalties"] = dict(self.schedule_penalties)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestbedConfig:
        """Inverse of ``to_dict``; missing keys keep their defaults, unknown keys fail."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise TestbedError(f"unknown TestbedConfig fields: {sorted(unknown)}")
        data = dict(data)
        if "schedule_penalties" in data:
            data["schedule_penalties"] = tuple(dict(data["schedule_penalties"]).items())
        return cls(**data)


_SIGNED_FIELDS = (
    "lr_skew",
    "lr_n_exp",
    "lr_d_exp",
    "batch_n_exp",
    "batch_d_exp",
    "lr_batch_exp",
    "weight_decay_n_exp",
    "weight_decay_d_exp",
)
_RANGES = (
    ("n_params_min", "n_params_max"),
    ("tokens_min", "tokens_max"),
    ("batch_size_min", "batch_size_max"),
)


class Testbed:
    """The ground truth of one ``TestbedConfig``; every method is vectorised over arrays."""

    __test__ = False

    def __init__(self, config: TestbedConfig | None = None) -> None:
        self.config = config or TestbedConfig()

    # -- laws -----------------------------------------------------------------------------

    def chinchilla_loss(self, n_params: Any, tokens: Any) -> np.ndarray:
        cfg = self.config
        n, d = np.asarray(n_params, dtype=float), np.asarray(tokens, dtype=float)
        return cfg.loss_e + cfg.loss_a / n**cfg.alpha + cfg.loss_b / d**cfg.beta

    def loss_noise_sd(self, n_params: Any, tokens: Any) -> np.ndarray:
        """The sd of the observed loss after ``tokens``: ``loss_noise_std`` plus
        ``loss_noise_share`` of the reducible loss ``L_chin(N, D) - E`` there."""
        cfg = self.config
        reducible = self.chinchilla_loss(n_params, tokens) - cfg.loss_e
        return cfg.loss_noise_std + cfg.loss_noise_share * reducible

    def lr_opt(self, n_params: Any, tokens: Any) -> np.ndarray:
        """Step-law optimal learning rate at the optimal batch size."""
        cfg = self.config
        return (
            cfg.lr_coef
            * np.asarray(n_params, float) ** cfg.lr_n_exp
            * np.asarray(tokens, float) ** cfg.lr_d_exp
        )

    def batch_opt_tokens(self, n_params: Any, tokens: Any) -> np.ndarray:
        """Step-law optimal batch size in tokens (ignoring the too-few-steps penalty)."""
        cfg = self.config
        return (
            cfg.batch_coef
            * np.asarray(n_params, float) ** cfg.batch_n_exp
            * np.asarray(tokens, float) ** cfg.batch_d_exp
        )

    def weight_decay_opt(self, n_params: Any, tokens: Any) -> np.ndarray:
        cfg = self.config
        return (
            cfg.weight_decay_coef
            * np.asarray(n_params, float) ** cfg.weight_decay_n_exp
            * np.asarray(tokens, float) ** cfg.weight_decay_d_exp
        )

    def utilisation(self, batch_tokens: Any) -> np.ndarray:
        cfg = self.config
        b = np.asarray(batch_tokens, dtype=float)
        return cfg.max_utilisation * b / (b + cfg.half_utilisation_batch_tokens)

    def lr_opt_at_batch(self, n: Any, d: Any, batch_tokens: Any) -> np.ndarray:
        """The optimal learning rate at (N, D) for the batch actually used (in tokens):
        the centre of the learning-rate penalty, which moves along the lr-batch ridge."""
        ratio = np.asarray(batch_tokens, float) / self.batch_opt_tokens(n, d)
        return self.lr_opt(n, d) * ratio**self.config.lr_batch_exp

    def _batch_penalty(self, n: Any, d: Any, batch_tokens: Any) -> np.ndarray:
        """Batch-size and too-few-steps penalties (both depend on the batch only)."""
        cfg = self.config
        log_b = np.log(batch_tokens)
        off = log_b - np.log(self.batch_opt_tokens(n, d))
        short = np.maximum(0.0, np.log(cfg.min_steps) + log_b - np.log(d))
        return cfg.batch_penalty * off**2 + cfg.steps_penalty * short**2

    # -- one configuration (or arrays of them) ----------------------------------------------

    def _columns(self, params: dict[str, Any]) -> dict[str, np.ndarray]:
        missing = [name for name in PARAM_NAMES if name not in params]
        unknown = sorted(set(params) - set(PARAM_NAMES))
        if missing or unknown:
            raise TestbedError(
                f"testbed params need exactly {list(PARAM_NAMES)}; "
                f"missing {missing}, unknown {unknown}"
            )
        cols = {k: np.asarray(params[k], dtype=float) for k in PARAM_NAMES if k != "schedule"}
        for name, value in cols.items():
            if not np.all(np.isfinite(value) & (value > 0)):
                raise TestbedError(f"{name} must be finite and > 0, got {params[name]!r}")
        if not np.all(cols["warmup_fraction"] < 1.0):
            raise TestbedError("warmup_fraction must lie in (0, 1)")
        cols["schedule_penalty"] = self._schedule_penalty(params["schedule"])
        cols["batch_tokens"] = cols["batch_size"] * self.config.seq_len
        return cols

    def _schedule_penalty(self, schedule: Any) -> np.ndarray:
        table = dict(self.config.schedule_penalties)
        names = np.asarray(schedule, dtype=object)
        unknown = {str(s) for s in names.ravel() if s not in table}
        if unknown:
            raise TestbedError(f"unknown schedule {sorted(unknown)}; choose from {list(table)}")
        return np.vectorize(table.__getitem__, otypes=[float])(names)

    def _penalty(self, c: dict[str, np.ndarray]) -> np.ndarray:
        cfg = self.config
        n, d, b = c["n_params"], c["tokens"], c["batch_tokens"]
        lr_off = np.log(c["learning_rate"] / self.lr_opt_at_batch(n, d, b))
        w = c["warmup_fraction"]
        warm_off = np.log(w / (1 - w)) - math.log(cfg.warmup_opt / (1 - cfg.warmup_opt))
        wd_off = np.log(c["weight_decay"] / self.weight_decay_opt(n, d))
        return (
            cfg.lr_penalty * _skewed_square(lr_off, cfg.lr_skew)
            + self._batch_penalty(n, d, b)
            + cfg.warmup_penalty * warm_off**2
            + cfg.weight_decay_penalty * wd_off**2
            + c["schedule_penalty"]
        )

    def _failure_codes(self, c: dict[str, np.ndarray]) -> np.ndarray:
        """0 = runs, 1 = out of memory (checked first: it fails at start-up), 2 = diverges."""
        cfg = self.config
        oom = c["n_params"] * c["batch_tokens"] > cfg.oom_limit
        lr_limit = cfg.divergence_lr_factor * self.lr_opt_at_batch(
            c["n_params"], c["tokens"], c["batch_tokens"]
        )
        diverged = c["learning_rate"] > lr_limit
        return np.where(oom, 1, np.where(diverged, 2, 0))

    def failure(self, params: dict[str, Any]) -> str | None:
        """Why one configuration fails ("oom", "diverged"), or None if it trains."""
        code = int(self._failure_codes(self._columns(params)))
        return (None, "oom", "diverged")[code]

    def noiseless_loss(self, params: dict[str, Any]) -> np.ndarray:
        """True final loss; NaN where the configuration fails (a failed run has no loss)."""
        c = self._columns(params)
        return np.where(self._failure_codes(c) == 0, self._trained_loss(c), np.nan)

    def loss_ignoring_failure(self, params: dict[str, Any]) -> np.ndarray:
        """The true final loss as if the configuration trained (a diverging run's curve
        follows it until it spikes)."""
        return self._trained_loss(self._columns(params))

    def _trained_loss(self, c: dict[str, np.ndarray]) -> np.ndarray:
        return self.chinchilla_loss(c["n_params"], c["tokens"]) * (1.0 + self._penalty(c))

    def flops(self, params: dict[str, Any]) -> np.ndarray:
        return 6.0 * np.asarray(params["n_params"], float) * np.asarray(params["tokens"], float)

    def expected_cost(self, params: dict[str, Any]) -> np.ndarray:
        """Mean cost in GPU-seconds, failures included (what launching it costs on average)."""
        cfg = self.config
        c = self._columns(params)
        full = self.flops(params) / (cfg.peak_flops * self.utilisation(c["batch_tokens"]))
        codes = self._failure_codes(c)
        return np.where(
            codes == 0,
            full,
            np.where(codes == 1, cfg.oom_cost_seconds, full * cfg.divergence_at_fraction),
        )

    def sample_cost(self, params: dict[str, Any], rng: np.random.Generator) -> float:
        """One run's cost: the expected cost times lognormal noise of mean 1."""
        sigma = self.config.cost_noise_sigma
        factor = math.exp(sigma * rng.standard_normal()) * math.exp(-0.5 * sigma**2)
        return float(self.expected_cost(params)) * factor

    # -- optima ---------------------------------------------------------------------------

    def optimal_hparams(self, n_params: Any, tokens: Any) -> dict[str, Any]:
        """The true optimum of every hyperparameter at (N, D), batch unrounded.

        ``batch_size`` is in sequences (a float: the continuous optimum, before rounding
        to a power of two), ``batch_tokens`` in tokens. When the too-few-steps penalty
        binds, the optimal batch is the minimiser of the two quadratics in ln(batch), and
        the learning rate follows the batch along its ridge.
        """
        cfg = self.config
        n, d = np.asarray(n_params, float), np.asarray(tokens, float)
        log_b_opt = np.log(self.batch_opt_tokens(n, d))
        log_b_steps = np.log(d / cfg.min_steps)  # the largest batch with enough steps
        blended = (cfg.batch_penalty * log_b_opt + cfg.steps_penalty * log_b_steps) / (
            cfg.batch_penalty + cfg.steps_penalty
        )
        batch_tokens = np.exp(np.where(log_b_opt <= log_b_steps, log_b_opt, blended))
        return {
            "learning_rate": self.lr_opt_at_batch(n, d, batch_tokens),
            "batch_size": batch_tokens / cfg.seq_len,
            "batch_tokens": batch_tokens,
            "warmup_fraction": cfg.warmup_opt,
            "weight_decay": self.weight_decay_opt(n, d),
            "schedule": min(cfg.schedule_penalties, key=lambda item: item[1])[0],
        }

    def compute_optimal(self, compute_flops: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chinchilla's compute-optimal (N*, D*) for C = 6ND FLOPs, and the loss there.

        Closed form (Hoffmann et al. 2022, eq. 4): N* = G (C/6)^(beta/(alpha+beta)),
        G = (alpha A / (beta B))^(1/(alpha+beta)), D* = (C/6) / N*. The loss is the true
        loss at (N*, D*) with every hyperparameter optimal (batch unrounded); the domain
        bounds of the config are not applied here.
        """
        cfg = self.config
        s = np.asarray(compute_flops, dtype=float) / 6.0
        g = (cfg.alpha * cfg.loss_a / (cfg.beta * cfg.loss_b)) ** (1 / (cfg.alpha + cfg.beta))
        n_star = g * s ** (cfg.beta / (cfg.alpha + cfg.beta))
        d_star = s / n_star
        best = self.optimal_hparams(n_star, d_star)
        penalty = self._batch_penalty(n_star, d_star, best["batch_tokens"])
        penalty = penalty + min(p for _, p in cfg.schedule_penalties)
        return n_star, d_star, self.chinchilla_loss(n_star, d_star) * (1 + penalty)

    def pareto_loss(self, cost: Any) -> np.ndarray:
        """The true Pareto front: the lowest noiseless loss of any configuration in the
        domain whose expected cost is at most ``cost`` (GPU-seconds); inf below the
        cheapest configuration.

        Optimises over N and D (continuous, within the config's bounds), the batch (powers
        of two in [batch_size_min, batch_size_max], out-of-memory sizes excluded) and every
        other hyperparameter (at its optimum, which is free). Exact at ``cost`` itself, and
        made non-increasing with a cached table of the front on a fine cost grid.
        """
        cost = np.asarray(cost, dtype=float)
        exact, _, _ = _front_at_cost(self, np.atleast_1d(cost).ravel())
        grid_cost, grid_best = _front_table(self.config)
        below = np.searchsorted(grid_cost, np.atleast_1d(cost).ravel(), side="right")
        table = np.concatenate([[np.inf], grid_best])[below]
        return np.minimum(exact, table).reshape(cost.shape)

    def pareto_optimum(self, cost: float) -> dict[str, Any]:
        """A configuration on the true front at expected cost ``cost``, with its loss."""
        loss, log_n, batch = _front_at_cost(self, np.array([float(cost)]))
        if not np.isfinite(loss[0]):
            raise TestbedError(f"no configuration in the domain costs {cost} GPU-seconds")
        n = float(np.exp(log_n[0]))
        batch_size = int(batch[0])
        util = float(self.utilisation(batch_size * self.config.seq_len))
        tokens = cost * self.config.peak_flops * util / (6.0 * n)
        best = self.optimal_hparams(n, tokens)
        params = {"n_params": n, "tokens": tokens, "batch_size": batch_size}
        params |= {k: best[k] for k in ("warmup_fraction", "weight_decay", "schedule")}
        params["learning_rate"] = float(
            self.lr_opt_at_batch(n, tokens, batch_size * self.config.seq_len)
        )
        params["weight_decay"] = float(params["weight_decay"])
        return {"params": params, "loss": float(loss[0])}


# -- the true front -------------------------------------------------------------------------

_GRID_POINTS = 65
_GOLDEN_ITERATIONS = 36
_TABLE_POINTS = 2001


def _slice_loss(tb: Testbed, log_s: np.ndarray, log_n: np.ndarray, b_tok: np.ndarray):
    """Loss with all free hyperparameters optimal at N = e^log_n, D = e^(log_s - log_n)."""
    n, d = np.exp(log_n), np.exp(log_s - log_n)
    best_schedule = min(p for _, p in tb.config.schedule_penalties)
    penalty = tb._batch_penalty(n, d, b_tok) + best_schedule
    return tb.chinchilla_loss(n, d) * (1.0 + penalty)


def _minimise_in_log_n(tb, log_s, lo, hi, b_tok):
    """Grid search then golden section over ln N in [lo, hi], all arrays (m, k)."""
    t = np.linspace(0.0, 1.0, _GRID_POINTS)
    width = np.maximum(hi - lo, 0.0)
    grid = lo[..., None] + width[..., None] * t
    values = _slice_loss(tb, log_s[..., None], grid, b_tok[..., None])
    i = np.argmin(values, axis=-1)
    step = width / (_GRID_POINTS - 1)
    a = np.maximum(lo, np.take_along_axis(grid, i[..., None], -1)[..., 0] - step)
    c = np.minimum(hi, a + 2 * step)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(_GOLDEN_ITERATIONS):
        x1, x2 = c - ratio * (c - a), a + ratio * (c - a)
        left = _slice_loss(tb, log_s, x1, b_tok) < _slice_loss(tb, log_s, x2, b_tok)
        a, c = np.where(left, a, x1), np.where(left, x2, c)
    x_gold = (a + c) / 2
    f_gold = _slice_loss(tb, log_s, x_gold, b_tok)
    f_grid = np.min(values, axis=-1)
    x_best = np.where(f_gold <= f_grid, x_gold, np.take_along_axis(grid, i[..., None], -1)[..., 0])
    return np.minimum(f_gold, f_grid), x_best


def _front_at_cost(tb: Testbed, cost: np.ndarray):
    """Lowest loss at expected cost exactly ``cost`` (m,): (loss, ln N, batch in sequences)."""
    cfg = tb.config
    k_lo = math.ceil(math.log2(cfg.batch_size_min))
    k_hi = math.floor(math.log2(cfg.batch_size_max))
    batch = 2.0 ** np.arange(k_lo, k_hi + 1)  # (k,) sequences
    b_tok = np.broadcast_to(batch * cfg.seq_len, (cost.size, batch.size))
    flops = cost[:, None] * cfg.peak_flops * tb.utilisation(b_tok)
    log_s = np.log(flops / 6.0)
    lo = np.maximum(math.log(cfg.n_params_min), log_s - math.log(cfg.tokens_max))
    hi = np.minimum(math.log(cfg.n_params_max), log_s - math.log(cfg.tokens_min))
    hi = np.minimum(hi, np.log(cfg.oom_limit / b_tok))
    with np.errstate(invalid="ignore", over="ignore"):
        loss, log_n = _minimise_in_log_n(tb, log_s, lo, hi, b_tok)
    loss = np.where(hi >= lo, loss, np.inf)
    j = np.argmin(loss, axis=1)
    rows = np.arange(cost.size)
    return loss[rows, j], log_n[rows, j], batch[j]


@functools.cache
def _front_table(config: TestbedConfig) -> tuple[np.ndarray, np.ndarray]:
    """The front on a fine log-cost grid, cumulative-minimised: (cost grid, best loss)."""
    cfg = config
    util_lo = cfg.max_utilisation * (cfg.batch_size_min * cfg.seq_len)
    util_lo /= cfg.batch_size_min * cfg.seq_len + cfg.half_utilisation_batch_tokens
    cheapest = 6 * cfg.n_params_min * cfg.tokens_min / (cfg.peak_flops * cfg.max_utilisation)
    dearest = 6 * cfg.n_params_max * cfg.tokens_max / (cfg.peak_flops * util_lo)
    grid = np.geomspace(cheapest, dearest, _TABLE_POINTS)
    loss, _, _ = _front_at_cost(Testbed(config), grid)
    return grid, np.minimum.accumulate(loss)


def _skewed_square(u: np.ndarray, k: float) -> np.ndarray:
    """``u^2`` for ``k = 0``, else ``2 (exp(k u) - 1 - k u) / k^2``: equal to second order
    at 0, steeper on the side ``k`` points to (exponential there, linear on the other)."""
    if k == 0:
        return u**2
    return 2.0 * np.expm1(k * u) / k**2 - 2.0 * u / k
