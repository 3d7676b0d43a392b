"""What ``bench/real_scaling.py`` runs: the study, the 10x trials, and the numbers from them.

Pure functions over plain dicts (the API's JSON), so the CI smoke test checks them without
a stack. The pieces:

- ``PRESETS``: the study's space, budget and objective options per mode (``full``: the
  ~40-minute, 2-CPU-core study, then ~50 minutes of 10x trials; ``short``: a reduced
  one; ``smoke``: CI-sized; ``gpu``: one CUDA device). Cost is the trial's training
  TFLOP (``cost_unit: tflop``), which a busy machine does not change, where wall seconds
  would.
- ``fixed_study``: a one-trial study of one given configuration (each parameter a choice
  of one value), so a hand-picked 10x trial runs through the API, the control worker and
  the Celery workers like any other trial, and is stored with its exact params.
- ``lr_sweep``, ``naive_baseline``, ``carbs_baseline``: the configurations run at 10x,
  each ``repeats`` times under trial seeds 0, 1, ... (``repeat_label``): one seed's runs
  share their initialisation and data order across the sweep, so the comparison between
  learning rates is paired, and the repeats measure how far a seed moves the loss.
- ``overheads``: the share of each trial's wall time that is not optimizer steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.training.cost import non_embedding_params, training_flops_per_token
from workers.training.model import ModelConfig

LR_FACTORS = (0.5, 0.7, 1.0, 1.4, 2.0)
# Further out, in the same steps of about 1.4x, where the sweep's best lies at its edge
# (``bracket_factors``): run 10's best learning rate at 10x was 4x the rules', past x2.
BRACKET_UP = (2.8, 4.0, 5.6, 8.0)
BRACKET_DOWN = (0.35, 0.25, 0.18, 0.125)
TFLOP = 1e12
# Hyperparameters a naive scale-up keeps from the best small run (size and tokens change).
NAIVE_KEPT = ("learning_rate", "batch_size", "warmup_fraction", "weight_decay")


@dataclass(frozen=True)
class Preset:
    """One mode of the benchmark: the study's space and budget, and where trials run."""

    space: list[dict[str, Any]]
    max_cost: float  # TFLOP, the whole study
    max_trial_cost: float  # TFLOP, one trial
    objective_options: dict[str, Any]
    workers: int = 2
    device: str = "cpu"
    queue: str = "trials"
    in_flight: int = 2
    scale_factor: float = 10.0
    max_trials: int | None = None  # with max_cost, the engine paces its climb to spend both
    search: dict[str, Any] = field(default_factory=dict)


def _space(
    *,
    d_model: tuple[int, int, int],
    n_layers: tuple[int, int, int],
    tokens: tuple[int, int, int],
    batch_size: tuple[int, int, int] = (8192, 2048, 65536),
    learning_rate: tuple[float, float, float] = (3e-3, 1e-4, 5e-2),
) -> list[dict[str, Any]]:
    """The lm space: (centre, min, max) of width, depth, tokens and batch; the rest shared."""

    def bounds(kind: str, name: str, centre_min_max: tuple) -> dict[str, Any]:
        centre, low, high = centre_min_max
        return {"kind": kind, "name": name, "center": centre, "min": low, "max": high}

    return [
        bounds("pow2", "d_model", d_model),
        bounds("int", "n_layers", n_layers),
        {**bounds("int", "tokens", tokens), "scale": 1.0},
        bounds("pow2", "batch_size", batch_size),
        bounds("log", "learning_rate", learning_rate),
        bounds("logit", "warmup_fraction", (0.05, 0.005, 0.3)),
        bounds("log", "weight_decay", (0.1, 1e-3, 0.5)),
    ]


# One thread per CPU worker: two workers share two cores. eval_tokens 32768 (the
# default) keeps the held-out loss's spread well under the 0.5% the verification checks;
# no step-0 evaluation and one evaluation at the end keep it under 10% of a trial.
_CPU_OPTIONS = {"cost_unit": "tflop", "num_threads": 1, "eval_points": 1, "eval_at_start": False}

PRESETS: dict[str, Preset] = {
    "full": Preset(
        # The short study's front sat on its smallest batch (2048 tokens): room below.
        # Learning rates up to 0.3: with 0.05 as the limit (run 5) widths 8-16 trained
        # best at the limit, so the optimum was never bracketed where the study starts,
        # and the wider models, first tried at the centre's 0.003-0.005, looked worse than
        # they are (docs/notes/real-scaling-runs.md).
        space=_space(
            d_model=(32, 8, 512),
            n_layers=(1, 1, 8),
            tokens=(262144, 65536, 2**25),
            batch_size=(8192, 512, 65536),
            learning_rate=(0.02, 1e-3, 0.3),
        ),
        # 100 TFLOP is about 1.1 CPU-hours at the 0.025 TFLOP/s one thread gets from these
        # small, head-heavy models; each 10x trial is then up to 15 TFLOP (~8 minutes).
        max_cost=100.0,
        max_trial_cost=1.5,
        # Without a trial cap the engine climbs by a share of what it has spent, and at
        # the smallest widths (0.002 TFLOP in ~1 s) that took over 160 trials for the first
        # 5 TFLOP; a cap makes it climb at the pace that spends the budget in 200 trials.
        max_trials=200,
        objective_options=_CPU_OPTIONS,
    ),
    "short": Preset(
        space=_space(d_model=(32, 8, 256), n_layers=(2, 1, 4), tokens=(262144, 65536, 2**22)),
        max_cost=6.0,
        max_trial_cost=0.4,
        objective_options=_CPU_OPTIONS,
    ),
    # Widths down to 4: on this corpus, below ~1e12 FLOPs the compute-optimal model is
    # smaller than any the short preset can build (its runs never bracket N*).
    "tiny": Preset(
        space=_space(d_model=(16, 4, 128), n_layers=(1, 1, 4), tokens=(262144, 65536, 2**22)),
        max_cost=3.0,
        max_trial_cost=0.2,
        objective_options=_CPU_OPTIONS,
    ),
    "smoke": Preset(
        space=_space(d_model=(32, 16, 64), n_layers=(1, 1, 2), tokens=(16384, 8192, 131072)),
        max_cost=0.15,
        max_trial_cost=0.02,
        objective_options={**_CPU_OPTIONS, "eval_tokens": 4096},
        scale_factor=2.0,
        search={"n_startup": 4},
    ),
    # One CUDA worker, 1-30M parameters: a study of a few minutes and its 10x trials in
    # about ten minutes of an H100. Eager bf16: torch.compile's tens of seconds per new
    # shape would be most of every trial here.
    "gpu": Preset(
        space=_space(d_model=(256, 128, 1024), n_layers=(4, 2, 12), tokens=(2**22, 2**20, 2**28)),
        max_cost=6000.0,
        max_trial_cost=300.0,
        objective_options={
            "cost_unit": "tflop",
            "eval_points": 1,
            "eval_at_start": False,
            "compile": False,
        },
        workers=1,
        device="cuda",
        queue="gpu",
        in_flight=1,
    ),
}


def study_spec(preset: Preset, *, name: str, seed: int = 0) -> dict[str, Any]:
    """The ``POST /studies`` body of the scaling study."""
    return {
        "name": name,
        "objective": "lm",
        "space": {"params": preset.space},
        # N with the embeddings: at these widths and a 256-byte vocabulary the tied output
        # head is a large share of the FLOPs, and a non-embedding N made the smallest
        # models look nearly free in 6ND (see docs/case-study-real-scaling.md).
        "scaling": {"n_params": "n_params_total", "tokens": "tokens"},
        "budget": {"max_cost": preset.max_cost}
        | ({} if preset.max_trials is None else {"max_trials": preset.max_trials}),
        "max_trial_cost": preset.max_trial_cost,
        "in_flight": preset.in_flight,
        "queue": preset.queue,
        "seed": seed,
        "objective_options": dict(preset.objective_options),
        "search": dict(preset.search),
    }


def fixed_study(
    preset: Preset, *, name: str, params: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    """A study whose only possible trial is ``params`` (each a choice of one value),
    trained under trial seed ``seed``'s initialisation and data order."""
    space = [{"kind": "choice", "name": k, "choices": [v]} for k, v in sorted(params.items())]
    return {
        "name": name,
        "objective": "lm",
        "space": {"params": space},
        "budget": {"max_trials": 1},
        "in_flight": 1,
        "queue": preset.queue,
        "seed": seed,
        "objective_options": dict(preset.objective_options),
    }


def fixed_params(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The configuration a ``fixed_study`` spec (as sent or as stored) runs; None for
    a study whose space is not one value per parameter."""
    params = spec.get("space", {}).get("params", [])
    if not params or any(p.get("kind") != "choice" or len(p["choices"]) != 1 for p in params):
        return None
    return {p["name"]: p["choices"][0] for p in params}


def repeat_label(label: str, repeat: int) -> str:
    """The label of a 10x configuration's ``repeat``-th run (0: the label itself)."""
    return label if repeat == 0 else f"{label}/seed{repeat}"


def base_label(label: str) -> str:
    """``repeat_label``'s inverse: the configuration a run's label names."""
    return label.split("/seed", 1)[0]


def lr_sweep(params: dict[str, Any], factors=LR_FACTORS) -> dict[str, dict[str, Any]]:
    """``params`` with its learning rate times each factor, keyed ``lr-x<factor>``."""
    return {
        sweep_label(factor): {**params, "learning_rate": params["learning_rate"] * factor}
        for factor in factors
    }


def sweep_label(factor: float) -> str:
    """The label of the sweep's configuration at ``factor`` x the learning rate."""
    return f"lr-x{factor:g}"


def sweep_factor(label: str) -> float | None:
    """The learning-rate factor a sweep label (``sweep_label``) names; None otherwise."""
    label = base_label(label)
    return float(label.removeprefix("lr-x")) if label.startswith("lr-x") else None


def bracket_factors(losses: dict[float, float], *, count: int) -> list[float]:
    """The next ``count`` factors to run beyond the sweep's edge when its best (lowest
    of ``losses``, factor -> mean loss, a diverged run's infinite) lies at that edge;
    [] once the best is inside the sweep, or when the steps ``BRACKET_UP`` /
    ``BRACKET_DOWN`` are used up.

    The sweep exists to find the best learning rate at scale; a best at its edge is a
    lower bound on how far off the prediction was, not the best (run 10: the sweep's
    best, x2, lost 1.5% to x4)."""
    if not losses:
        return []
    best = min(losses, key=losses.__getitem__)
    if best == max(losses):
        steps = [f for f in BRACKET_UP if f > best]
    elif best == min(losses):
        steps = [f for f in BRACKET_DOWN if f < best]
    else:
        return []
    return steps[:count]


def naive_baseline(predicted: dict[str, Any], best_small: dict[str, Any]) -> dict[str, Any]:
    """The best small run scaled naively: N and D as predicted (the observed allocation),
    its learning rate, batch, warmup and weight decay kept as they were."""
    return {**predicted, **{k: best_small[k] for k in NAIVE_KEPT if k in best_small}}


def at_scale_configs(
    predicted: dict[str, Any], study_trials: list[dict[str, Any]], space: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The configurations run at the target scale, by label: the lr sweep around the
    rules' ``predicted`` one (``lr-x1`` is it), the naive baseline and CARBS's, the last
    matched to ``predicted``'s compute. ``study_trials``: the study's own trials, the
    verification trial left out. The naive baseline is left out where it is the rules'
    configuration (no hyperparameter law sets a value the best run does not have): it
    would be the same training run again (``naive_is_rules``)."""
    configs = lr_sweep(predicted, LR_FACTORS)
    naive = naive_baseline(predicted, best_trial(study_trials)["params"])
    if naive != predicted:
        configs["naive"] = naive
    configs["carbs"] = carbs_baseline(
        study_front(study_trials), space, target_cost=trial_tflop(predicted), cost_of=trial_tflop
    )
    return configs


def naive_is_rules(predicted: dict[str, Any], study_trials: list[dict[str, Any]]) -> bool:
    """Whether the naive baseline is the rules' configuration itself."""
    return naive_baseline(predicted, best_trial(study_trials)["params"]) == predicted


def trial_tflop(params: dict[str, Any], *, vocab_size: int = 256, seq_len: int = 128) -> float:
    """A config's training TFLOP (the objective's ``cost_unit: tflop``)."""
    return training_flops_per_token(_model(params, vocab_size, seq_len)) * params["tokens"] / TFLOP


def trial_n_params(params: dict[str, Any], *, vocab_size: int = 256, seq_len: int = 128) -> int:
    return non_embedding_params(_model(params, vocab_size, seq_len))


def _model(params: dict[str, Any], vocab_size: int, seq_len: int) -> ModelConfig:
    d_model = int(params["d_model"])
    return ModelConfig(
        vocab_size=vocab_size,
        seq_len=seq_len,
        d_model=d_model,
        n_layers=int(params["n_layers"]),
        n_heads=max(1, d_model // 32),
    )


def carbs_baseline(
    front: list[dict[str, Any]],
    space: list[dict[str, Any]],
    *,
    target_cost: float,
    cost_of: Callable[[dict[str, Any]], float] | None = None,
) -> dict[str, Any]:
    """CARBS's way to scale up: the largest config on the front, each parameter moved along
    its least-squares line through the front's points (in its transformed value vs ln
    cost) from that config's cost to ``target_cost``; ints and powers of two snapped.

    ``front``: trials with ``params`` and ``cost_seconds`` (the study's cost unit).
    ``cost_of``: a config's cost in that unit; given, the tokens are rescaled after the
    snapping so the config costs ``target_cost``, as the configurations it is compared
    with do. Without it, a depth rounded from 2.6 to 3 gave run 9's baseline 1.48x their
    compute.
    """
    points = [t for t in front if t.get("cost_seconds")]
    if len(points) < 2:
        raise ValueError(f"a least-squares line needs 2 front points, got {len(points)}")
    log_cost = np.log([t["cost_seconds"] for t in points])
    largest = points[int(np.argmax(log_cost))]
    shift = math.log(target_cost) - float(log_cost.max())
    out = {}
    for spec in space:
        name, kind = spec["name"], spec["kind"]
        forward, inverse = _TRANSFORMS["logit" if kind == "logit" else "log"]
        y = forward(np.array([float(t["params"][name]) for t in points]))
        slope = float(np.polyfit(log_cost, y, 1)[0]) if np.ptp(log_cost) > 0 else 0.0
        value = float(inverse(forward(float(largest["params"][name])) + slope * shift))
        out[name] = _snap(kind, value)
    if cost_of is not None:
        out["tokens"] = round(out["tokens"] * target_cost / cost_of(out))
    return out


_TRANSFORMS = {
    "log": (np.log, np.exp),
    "logit": (lambda v: np.log(v) - np.log1p(-v), lambda y: 1.0 / (1.0 + np.exp(-y))),
}


def _snap(kind: str, value: float) -> int | float:
    if kind == "pow2":
        return int(2 ** round(math.log2(max(value, 1.0))))
    if kind == "int":
        return max(1, round(value))
    return value


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The completed trial of lowest loss."""
    done = [t for t in trials if t["state"] == "COMPLETE" and t.get("loss") is not None]
    if not done:
        raise ValueError("no completed trial")
    return min(done, key=lambda t: t["loss"])


def study_front(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed trials no other beats in both loss and cost, by cost."""
    from search.pareto import pareto_mask

    done = [t for t in trials if t["state"] == "COMPLETE" and t.get("loss") is not None]
    if not done:
        return []
    mask = pareto_mask(
        np.array([t["loss"] for t in done]), np.array([t["cost_seconds"] for t in done])
    )
    return sorted(
        (t for t, m in zip(done, mask, strict=True) if m), key=lambda t: t["cost_seconds"]
    )


def overheads(trial: dict[str, Any]) -> dict[str, float] | None:
    """Where a finished trial's wall time went (a ``GET /trials/{id}`` body), or None.

    ``wall``: dispatch to result recorded (queue, worker, reporting included);
    ``train``: its optimizer steps at their steady rate (tokens / tokens per second);
    everything else is overhead: ``dispatch`` (outside the objective), ``data``,
    ``setup``, ``eval``, ``warmup`` (steps beyond their steady time: compilation, first
    allocations). ``share`` = 1 - train / wall.
    """
    metrics = trial.get("metrics") or {}
    if trial.get("dispatched_at") is None or trial.get("finished_at") is None:
        return None
    if not metrics.get("tokens_per_second") or "step_seconds" not in metrics:
        return None
    wall = trial["finished_at"] - trial["dispatched_at"]
    train = min(metrics["tokens"] / metrics["tokens_per_second"], metrics["step_seconds"])
    parts = {
        "wall": wall,
        "train": train,
        "dispatch": max(0.0, wall - metrics["wall_seconds"]),
        "data": metrics["data_seconds"],
        "setup": metrics["setup_seconds"],
        "eval": metrics["eval_seconds"],
        "warmup": metrics["step_seconds"] - train,
    }
    parts["share"] = 1.0 - train / wall if wall > 0 else math.nan
    return parts
