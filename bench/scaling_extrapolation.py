"""Extrapolation error of learned scaling rules vs study budget, from real engine studies.

For each ground truth and seed, the search engine (``search.engine.ParetoSearch``,
default settings with the spread points the service gives a study with scaling axes,
``search.settings.RULES_SPREAD_EVERY``) runs one study on the testbed from the
testbed's default, off-optimum centre, in rounds of 8 parallel trials, up to the largest
budget; a smaller budget is the same study stopped earlier (its first trials). Rules
are fitted to the observations of each budget; at 100x the largest compute of any run, the predicted
optimal learning rate and batch size are compared with the truth
(``Testbed.optimal_hparams`` at the true ``compute_optimal``), as is the exponent of
N*(C) (``beta / (alpha + beta)``). What the user pays for all of it together is the
loss of the predicted configuration at its own N and D against the best loss at that
compute (``loss_excess``; "diverged" where the testbed says that configuration fails).

``--cost flops`` (default) tells the engine each run's cost in GPU-seconds at a
utilisation that does not depend on the batch (``half_utilisation_batch_tokens = 0``),
so cost is proportional to compute and the engine's cost-optimal runs are the
compute-optimal ones the ground truth defines. ``--cost seconds`` keeps the testbed's
default hardware model, where small batches under-use the GPU: the engine then (rightly)
favours larger batches and smaller models than the compute-optimal ones, and its runs
may not bracket the compute-optimal allocation.

Noise: by default the testbed's (a fixed sd of 0.01 on every loss); ``--noise 0.01,0.03``
runs each study at each of these shares of the reducible loss instead (sd
``share * (L_chin(N, D) - E)`` at each run's N and D, ``TestbedConfig.loss_noise_share``).

``--held-out`` runs issue 16's held-out matrix: the truths of ``bench.truths.
ENGINE_HELD_OUT`` (never used to tune the engine or the fit), noise 1% and 3%, seeds
0-4, 240 trials: 30 studies. ``--truths held-out-data-hungry,held-out-sharp-lr`` runs the
budget-pacing bench's held-out truths (``PACING_HELD_OUT``), a second held-out set;
``--truths spread-wide-bowls,spread-narrow-bowls`` the spread points' (``bench.truths.
SPREAD_HELD_OUT``), and ``--truths engine-skewed-balanced,engine-skewed-steep,
engine-skewed-shallow`` the warp's skewed held-out ones (``SKEWED_HELD_OUT``).
Every run scores the 90% intervals of the learning rate, batch size, N*, D* and loss
at 100x (``bench.designed_sweeps.coverage_at_100x``; the learning rate also against the
optimum for the predicted batch, ``lr_coverage_at_predicted_batch``) and prints, per
truth and noise, the median |log10 error| of lr and batch and the median |error| of the
N*(C) exponent, each bar's verdict per truth and noise with a bootstrap interval on that
median (``bar_table``: five studies rarely settle a bar), then the pooled coverage and
median widths.

Run:  .venv/bin/python -m bench.scaling_extrapolation [--budgets 152,304,600]
      [--seeds 0,1,2] [--truths a,b] [--noise 0.01,0.03] [--cost flops|seconds]
      [--jobs 2] [--held-out]
Studies are kept as JSON under bench/results/scaling_studies/ and reused by later runs
(delete them to rerun the engine), so a run stopped midway resumes; the results go to
bench/results/scaling_extrapolation_<UTC time>.json, and Markdown tables are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.truths import (
    BENCH_TRUTHS,
    ENGINE_HELD_OUT,
    SKEWED_HELD_OUT,
    SKEWED_LR,
    SPREAD_HELD_OUT,
    TUNED_ON,
)
from search.engine import ParetoSearch
from search.errors import NotEnoughDataError
from search.scaling import ScalingAxes, fit_scaling_rules
from search.settings import RULES_SPREAD_EVERY, SearchSettings
from search.types import Observation
from workers.objectives.base import NullContext
from workers.objectives.testbed import TestbedObjective
from workers.objectives.testbed_truth import TestbedConfig

AXES = ScalingAxes(n_params="n_params", tokens="tokens")
RESULTS = Path(__file__).parent / "results"
STUDIES = RESULTS / "scaling_studies"
ROUND = 8
# Ground truths: the default testbed (Chinchilla loss, step-law learning rate and batch
# size) and two others whose loss exponents (so N*(C)), learning-rate and batch-size laws
# all differ.
GROUND_TRUTHS: dict[str, dict[str, float]] = {
    "chinchilla-steplaw": {},
    "flatter-lr": {
        "lr_n_exp": -0.5, "lr_d_exp": 0.2, "batch_d_exp": 0.45, "alpha": 0.30, "beta": 0.33,
    },
    "steeper-lr": {
        "lr_n_exp": -0.8, "lr_d_exp": 0.4, "batch_d_exp": 0.65, "batch_n_exp": -0.1,
        "alpha": 0.38, "beta": 0.26,
    },
}  # fmt: skip
COST_MODELS = {"flops": {"half_utilisation_batch_tokens": 0.0}, "seconds": {}}
# The budget-pacing bench's held-out truths, never used to tune the rules either: a
# second held-out set for a change chosen with ENGINE_HELD_OUT in view
# (``--truths held-out-data-hungry,held-out-sharp-lr``).
PACING_HELD_OUT = {name: config for name, config in BENCH_TRUTHS.items() if name != TUNED_ON}
TRUTHS = {
    **GROUND_TRUTHS, **ENGINE_HELD_OUT, **PACING_HELD_OUT, **SPREAD_HELD_OUT, **SKEWED_LR,
    **SKEWED_HELD_OUT,
}  # fmt: skip
# Issue 16's bars at 100x: median |log10 error| of lr and batch (dex), |N*(C) exponent error|.
BARS = {"learning_rate": 0.08, "batch_size": 0.12, "exponent_error": 0.03}
COVERAGE_BAND = (0.80, 0.97)
HELD_OUT_MATRIX = {
    "truths": ",".join(ENGINE_HELD_OUT), "noise": "0.01,0.03", "seeds": "0,1,2,3,4",
    "budgets": "240",
}  # fmt: skip


def truth_config(truth: str, cost: str, noise_share: float | None = None) -> TestbedConfig:
    """The testbed of ground truth ``truth`` under cost model ``cost``; with
    ``noise_share``, the loss noise is that share of the reducible loss (and nothing else)."""
    if truth not in TRUTHS:
        raise ValueError(f"unknown ground truth {truth!r}; known: {', '.join(TRUTHS)}")
    noise = {} if noise_share is None else {"loss_noise_std": 0.0, "loss_noise_share": noise_share}
    return TestbedConfig(**TRUTHS[truth], **COST_MODELS[cost], **noise)


def study_name(truth: str, cost: str, noise_share: float | None) -> str:
    """The cache key of a study's observations (``parse_study_path`` reads it back)."""
    label = truth if noise_share is None else f"{truth}@noise{noise_share:g}"
    return f"{label}_{cost}"


def parse_study_path(path: Path) -> tuple[str, str, float | None, int, int]:
    """truth, cost, noise share (None: the testbed's default), trials and seed of a
    cached study's file."""
    label, cost, trials, seed = path.stem.rsplit("_", 3)
    truth, _, noise = label.partition("@noise")
    return truth, cost, float(noise) if noise else None, int(trials), int(seed)


def engine_study(config: TestbedConfig, *, trials: int, seed: int) -> list:
    """The observations of ``trials`` engine trials on the testbed, ``ROUND`` at a time,
    with the spread points the service gives a study with scaling axes."""
    objective = TestbedObjective(config)
    settings = SearchSettings(seed=seed, spread_every=RULES_SPREAD_EVERY)
    engine = ParetoSearch(objective.default_space(), settings)
    done = 0
    while done < trials:
        for suggestion in engine.ask(min(ROUND, trials - done)):
            out = objective.run(
                suggestion.params, seed=seed * 100_000 + done, context=NullContext()
            )
            engine.tell(suggestion.suggestion_id, out.loss, out.cost_seconds, failed=out.failed)
            done += 1
    return list(engine.observations)


def extrapolation_errors(
    config: TestbedConfig, rules, prediction
) -> dict[str, float | None] | None:
    """Factors pred/true for lr and batch in ``prediction`` (the rules' at 100x the
    largest compute), and the N*(C) exponent error; None without an N*(C) law. A refused
    (unsupported) rule's factor is None; ``<name>_as_used`` is the factor of what the
    user is given either way: the law's estimate, or for a refused rule the best
    observed value."""
    target = prediction.compute
    allocation = rules.allocation
    if allocation is None or allocation.n_params is None:
        return None
    testbed = TestbedObjective(config).testbed
    n_star, d_star, best_loss = testbed.compute_optimal(target)
    optimum = testbed.optimal_hparams(n_star, d_star)
    out: dict[str, float | None] = {}
    for name in ("learning_rate", "batch_size"):
        value = prediction.values[name]
        truth = float(optimum[name])
        out[name] = None if value.estimate is None else value.estimate / truth
        used = value.estimate if value.estimate is not None else float(value.value)
        out[f"{name}_as_used"] = used / truth
    out["exponent_error"] = allocation.n_params.coef[1] - config.beta / (config.alpha + config.beta)
    out["loss_excess"] = loss_excess(testbed, prediction, best_loss)
    return out


def lr_coverage_at_predicted_batch(config: TestbedConfig, prediction) -> dict | None:
    """Whether the learning rate's interval in ``prediction`` (the rules' at 100x) holds
    the optimum *for the rest of the prediction* (its N, D and batch), as a sweep of the
    learning rate alone at that scale would find it (issue 19's check), rather than the
    optimum at the optimal batch; None where the rule is refused or there is no
    allocation."""
    value = prediction.values["learning_rate"]
    if not value.supported or value.low is None or prediction.n_params is None:
        return None
    assert prediction.tokens is not None and value.estimate is not None
    testbed = TestbedObjective(config).testbed
    batch_tokens = float(prediction.params["batch_size"]) * config.seq_len
    n, d = prediction.n_params.estimate, prediction.tokens.estimate
    truth = float(testbed.lr_opt_at_batch(n, d, batch_tokens))
    return {
        "covered": bool(value.low <= truth <= value.high),
        "width_dex": math.log10(value.high / value.low),
        "error_dex": math.log10(value.estimate / truth),
    }


def loss_excess(testbed, prediction, best_loss: float) -> float | None:
    """What the user pays for the whole prediction: the noiseless loss of the predicted
    configuration (its N and D, every other value as given) over the best loss at that
    compute, minus 1; None where that configuration fails (diverges) on the testbed."""
    assert prediction.n_params is not None and prediction.tokens is not None
    params = {
        **prediction.params,
        "n_params": prediction.n_params.estimate,
        "tokens": prediction.tokens.estimate,
    }
    loss = float(testbed.noiseless_loss(params))
    return None if math.isnan(loss) else loss / float(best_loss) - 1.0


def cached_study(config: TestbedConfig, name: str, *, trials: int, seed: int) -> list:
    """``engine_study``, kept as JSON under ``STUDIES`` (keyed by ``name``)."""
    path = STUDIES / f"{name}_{trials}_{seed}.json"
    if path.exists():
        return [Observation.from_dict(o) for o in json.loads(path.read_text())]
    observations = engine_study(config, trials=trials, seed=seed)
    STUDIES.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([o.to_dict() for o in observations]))
    return observations


def _one(job: tuple[str, str, float | None, list[int], int]) -> list[dict]:
    # bench.designed_sweeps imports this module: import its scoring here.
    from bench.designed_sweeps import coverage_at_100x, prediction_at_100x

    truth, cost, noise_share, budgets, seed = job
    config = truth_config(truth, cost, noise_share)
    name = study_name(truth, cost, noise_share)
    start = time.perf_counter()
    observations = cached_study(config, name, trials=max(budgets), seed=seed)
    engine_seconds = time.perf_counter() - start
    space = TestbedObjective(config).default_space()
    rows = []
    for trials in budgets:
        row = {
            "truth": truth, "cost": cost, "noise_share": noise_share, "trials": trials,
            "seed": seed,
        }  # fmt: skip
        row["engine_seconds_all_budgets"] = engine_seconds
        try:
            rules = fit_scaling_rules(
                observations[:trials], space, AXES, seed=seed, n_bootstrap=100
            )
        except NotEnoughDataError as exc:
            rows.append(row | {"refused": str(exc)})
            continue
        row["compute_max"] = rules.observed.compute_max
        row["unsupported"] = [r.name for r in rules.hyperparameters if not r.supported]
        prediction = prediction_at_100x(rules)
        row["coverage"] = coverage_at_100x(config, prediction) | {
            "lr_at_predicted_batch": lr_coverage_at_predicted_batch(config, prediction)
        }
        errors = extrapolation_errors(config, rules, prediction)
        if errors is None:
            row["refused"] = "no N*(C) law"
        else:
            row |= errors
            refused = [k for k in ("learning_rate", "batch_size") if errors[k] is None]
            if refused:
                row["refused"] = f"no law for {', '.join(refused)}"
        rows.append(row)
    return rows


def _factor(values: list[float]) -> str:
    logs = np.abs(np.log(values))
    return f"{math.exp(np.median(logs)):.2f} / {math.exp(logs.max()):.2f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| trials | cost | lr factor median / worst | batch factor median / worst "
        "| N* exponent error median / worst | within all three | refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for trials, cost in sorted({(r["trials"], r["cost"]) for r in rows}):
        cell = [r for r in rows if r["trials"] == trials and r["cost"] == cost]
        scored = [r for r in cell if "refused" not in r]
        if not scored:
            lines.append(f"| {trials} | {cost} | - | - | - | 0/{len(cell)} | {len(cell)} |")
            continue
        exponent = np.abs([r["exponent_error"] for r in scored])
        ok = sum(
            max(abs(math.log(r["learning_rate"])), abs(math.log(r["batch_size"]))) <= math.log(1.25)
            and abs(r["exponent_error"]) <= 0.03
            for r in scored
        )
        lines.append(
            f"| {trials} | {cost} | {_factor([r['learning_rate'] for r in scored])} "
            f"| {_factor([r['batch_size'] for r in scored])} "
            f"| {np.median(exponent):.3f} / {exponent.max():.3f} | {ok}/{len(cell)} "
            f"| {len(cell) - len(scored)} |"
        )
    return "\n".join(lines)


def _dex(rows: list[dict], key: str) -> np.ndarray:
    """|log10| of a factor (or |exponent error|) over the rows that have it."""
    values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
    return np.abs(values) if key == "exponent_error" else np.abs(np.log10(values))


def _median_dex(rows: list[dict], key: str) -> tuple[float, int]:
    """Median ``_dex`` over the rows that have it, and how many rows lack it."""
    dex = _dex(rows, key)
    return (float(np.median(dex)) if dex.size else math.nan), len(rows) - dex.size


def _against(value: float, bar: float) -> str:
    return f"{value:.3f}" + (" ok" if value <= bar else "")


def dex_table(rows: list[dict]) -> str:
    """Per truth, noise and budget, and pooled: median |log10 error| of lr and batch at
    100x, as used (a refused rule's best observed value included) and of the laws only
    (refused rules left out, counted), and median |N*(C) exponent error|; "ok" marks a
    median within its bar."""
    lines = [
        "| truth | noise | trials | studies | lr dex: as used / law only (refused) "
        "| batch dex: as used / law only (refused) | N* exponent: median abs error "
        "| loss above the optimum: median / over 5% / diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cells = sorted(
        {(r["truth"], r.get("noise_share"), r["trials"]) for r in rows},
        key=lambda c: (c[0], c[1] or 0.0, c[2]),
    )
    for trials in sorted({r["trials"] for r in rows}):
        cells.append(("all", None, trials))
    for truth, noise, trials in cells:
        cell = [
            r
            for r in rows
            if r["trials"] == trials
            and (truth == "all" or (r["truth"], r.get("noise_share")) == (truth, noise))
        ]
        stats = []
        for name in ("learning_rate", "batch_size"):
            used, _ = _median_dex(cell, f"{name}_as_used")
            law, refused = _median_dex(cell, name)
            stats.append(f"{_against(used, BARS[name])} / {law:.3f} ({refused})")
        exponent, _ = _median_dex(cell, "exponent_error")
        stats.append(_against(exponent, BARS["exponent_error"]))
        stats.append(_excess_summary(cell))
        label = "all" if truth == "all" else "default" if noise is None else f"{noise:.0%}"
        lines.append(f"| {truth} | {label} | {trials} | {len(cell)} | " + " | ".join(stats) + " |")
    return "\n".join(lines)


# Bootstrap draws and level of the interval on a median (``bar_table``).
MEDIAN_DRAWS = 2000
MEDIAN_LEVEL = 0.90


def median_interval(values: np.ndarray, *, seed: int = 0) -> tuple[float, float, float]:
    """The median of ``values`` and a ``MEDIAN_LEVEL`` percentile-bootstrap interval on it
    (studies resampled with replacement)."""
    rng = np.random.default_rng(seed)
    draws = np.median(rng.choice(values, size=(MEDIAN_DRAWS, len(values))), axis=1)
    tail = (1.0 - MEDIAN_LEVEL) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(np.median(values)), float(low), float(high)


def bar_table(rows: list[dict]) -> str:
    """Per truth and noise (the largest budget), each bar's median with its bootstrap
    interval and a verdict: "met" where the interval lies within the bar, "missed" where
    it lies beyond it, else "undecided": with five studies a cell's median moves a lot
    from one draw of the studies to the next, and a single "ok" does not say which."""
    trials = max(r["trials"] for r in rows)
    lines = [
        f"| truth | noise | studies | lr dex as used (bar {BARS['learning_rate']}) "
        f"| batch dex as used (bar {BARS['batch_size']}) "
        f"| N* exponent (bar {BARS['exponent_error']}) |",
        "|---|---|---|---|---|---|",
    ]
    cells = sorted({(r["truth"], r.get("noise_share") or 0.0) for r in rows})
    for truth, noise in cells:
        cell = [
            r for r in rows
            if r["trials"] == trials and (r["truth"], r.get("noise_share") or 0.0) == (truth, noise)
        ]  # fmt: skip
        shown = []
        for key, bar in (
            ("learning_rate_as_used", BARS["learning_rate"]),
            ("batch_size_as_used", BARS["batch_size"]),
            ("exponent_error", BARS["exponent_error"]),
        ):
            dex = _dex(cell, key)
            if not dex.size:
                shown.append("-")
                continue
            median, low, high = median_interval(dex)
            verdict = "met" if high <= bar else "missed" if low > bar else "undecided"
            shown.append(f"{median:.3f} [{low:.3f}, {high:.3f}] {verdict}")
        label = "default" if noise == 0.0 else f"{noise:.0%}"
        lines.append(f"| {truth} | {label} | {len(cell)} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def _excess_summary(rows: list[dict]) -> str:
    """Median loss excess at 100x (a diverged configuration counting as the worst), how
    many rows are over 5%, and how many diverge, over the rows scored for it."""
    scored = [r for r in rows if "loss_excess" in r]
    if not scored:
        return "-"
    excess = [math.inf if r["loss_excess"] is None else r["loss_excess"] for r in scored]
    median = float(np.median(excess))
    over = sum(e > 0.05 for e in excess)
    diverged = sum(r["loss_excess"] is None for r in scored)
    shown = "diverged" if math.isinf(median) else f"{median:.2%}"
    return f"{shown} / {over} / {diverged}"


# The intervals scored at 100x: the learning rate twice, against the optimum at the
# optimal batch and against the optimum for the predicted batch.
COVERAGE_NAMES = (
    "learning_rate",
    "lr_at_predicted_batch",
    "batch_size",
    "n_star",
    "d_star",
    "loss",
)


def coverage_table(rows: list[dict]) -> str:
    """Pooled over ``rows`` (with a ``coverage`` entry): how often each 90% interval at
    100x holds the truth, its median width and the median |error| of its estimate (dex)."""
    lines = [
        "| interval at 100x | scored | coverage | median width (dex) | median abs error (dex) |",
        "|---|---|---|---|---|",
    ]
    low, high = COVERAGE_BAND
    for name in COVERAGE_NAMES:
        got = [r["coverage"][name] for r in rows if r.get("coverage") and r["coverage"].get(name)]
        if name == "lr_at_predicted_batch" and not got:
            continue  # scored on engine studies only (a sweep's rows do not carry it)
        covered = sum(g["covered"] for g in got)
        share = covered / len(got) if got else math.nan
        width = np.median([g["width_dex"] for g in got]) if got else math.nan
        error = np.median([abs(g["error_dex"]) for g in got]) if got else math.nan
        verdict = " ok" if low <= share <= high else ""
        lines.append(
            f"| {name} | {len(got)} | {covered}/{len(got)} ({share:.0%}){verdict} "
            f"| {width:.3f} | {error:.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--held-out`` sets ``HELD_OUT_MATRIX`` as the defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="152,304,600")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--truths", default=",".join(GROUND_TRUTHS))
    parser.add_argument("--noise", default="", help="shares of the reducible loss, e.g. 0.01,0.03")
    parser.add_argument("--cost", choices=sorted(COST_MODELS), default="flops")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--held-out", action="store_true", help="issue 16's held-out matrix (see above)"
    )
    if parser.parse_known_args(argv)[0].held_out:
        parser.set_defaults(**HELD_OUT_MATRIX)  # explicit options still win
    return parser.parse_args(argv)


def study_jobs(args: argparse.Namespace) -> list[tuple[str, str, float | None, list[int], int]]:
    """One job per truth, noise share and seed: (truth, cost, noise share, budgets, seed)."""
    budgets = sorted(int(trials) for trials in args.budgets.split(","))
    noises = [float(n) for n in args.noise.split(",")] if args.noise else [None]
    truths = args.truths.split(",")
    for truth in truths:
        truth_config(truth, args.cost)  # fail fast on an unknown name
    return [
        (truth, args.cost, noise, budgets, int(seed))
        for truth in truths
        for noise in noises
        for seed in args.seeds.split(",")
    ]


def main() -> None:
    args = parse_args()
    jobs = study_jobs(args)
    budgets = jobs[0][3]
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for study_rows in pool.map(_one, jobs):
            rows.extend(study_rows)
            for row in study_rows:
                print(json.dumps(row), flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {platform.system()}"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    (RESULTS / f"scaling_extrapolation_{stamp}.json").write_text(
        json.dumps({"machine": machine, "commit": commit, "rows": rows}, indent=1)
    )
    print(f"machine: {machine}; {stamp}; commit {commit}")
    print(table(rows))
    print()
    print(dex_table(rows))
    print()
    level = f"{MEDIAN_LEVEL:.0%}"
    print(f"the bars at {max(budgets)} trials, medians with {level} bootstrap intervals:")
    print(bar_table(rows))
    print()
    largest = [r for r in rows if r["trials"] == max(budgets)]
    print(f"intervals at {max(budgets)} trials, pooled over {len(largest)} studies:")
    print(coverage_table(largest))


if __name__ == "__main__":
    main()
