"""Scaling rules from designed sweeps on the testbed, against the per-cell baseline,
and the calibration of their 90% intervals at 100x.

A designed sweep is a set of (N, D) cells, each a full grid of learning rates x batch
sizes (``LR_GRID`` x ``BATCH_GRID``, the same grid in every cell, as published sweeps
are run; warmup, weight decay and schedule fixed), evaluated on a testbed ground truth
with Gaussian noise at a fixed share of the cell's reducible loss (``L(N, D) - E``);
runs above the divergence limit are failed observations.

Rules are fitted on the smallest cells (at most ``FIT_SHARE`` of the sweep's compute).

- **Largest cells.** At each of the ``N_EVAL`` largest cells the predicted optimal
  learning rate and batch size (``predict(n_params=N, tokens=D)``) are compared with
  the truth (``Testbed.optimal_hparams``), as are those of the baseline: least squares
  ``ln lr = a + p ln N + q ln D``, ``ln B = b + r ln D`` through each fitted cell's
  grid-best run. The loss at each predicted configuration (batch on the grid's powers
  of two, noiseless) is compared with the cell's best grid point.
- **Coverage.** At 100x the largest fitted compute, whether the 90% intervals of the
  learning rate, batch size, N*, D* and loss (``predict(compute=...)``) contain the
  truth (``Testbed.compute_optimal`` and ``optimal_hparams`` there), and their widths.

Ground truths: the three of ``bench.scaling_extrapolation`` (the default one has the
published step law, whose lr optimum falls with N and rises with D), ``skewed-lr``
(``bench.truths.SKEWED_LR``: its loss rises faster above the lr optimum than below, as
in real sweeps) and ``HELD_OUT``, whose exponents and skews were never used while
developing the fit or its intervals (score them on other seeds than the development
truths: a seed's noise draws are the same in every truth).

Run:  nice -n 10 .venv/bin/python -m bench.designed_sweeps [--seeds 0,1,2,3]
      [--fit-share 0.1] [--truths chinchilla-steplaw,held-out]
Prints Markdown tables; writes bench/results/designed_sweeps_<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.scaling_extrapolation import GROUND_TRUTHS
from bench.truths import SKEWED_LR
from search.errors import NotEnoughDataError
from search.scaling import ScalingAxes, fit_scaling_rules
from search.types import Observation
from workers.objectives.testbed import TestbedObjective
from workers.objectives.testbed_truth import Testbed, TestbedConfig

AXES = ScalingAxes(n_params="n_params", tokens="tokens")
RESULTS = Path(__file__).parent / "results"
SWEEP_TRUTHS: dict[str, dict[str, float]] = {
    **GROUND_TRUTHS,
    "held-out": {
        "lr_n_exp": -0.35, "lr_d_exp": 0.12, "batch_d_exp": 0.5, "batch_n_exp": 0.05,
        "alpha": 0.31, "beta": 0.36,
    },
    "held-out-2": {
        "lr_n_exp": -0.55, "lr_d_exp": 0.25, "batch_d_exp": 0.40, "batch_n_exp": 0.1,
        "alpha": 0.42, "beta": 0.30,
    },
    "held-out-3": {
        "lr_n_exp": -0.30, "lr_d_exp": 0.05, "batch_d_exp": 0.60, "alpha": 0.28, "beta": 0.40,
    },
    **SKEWED_LR,
    # Skewed like ``skewed-lr`` (``bench.truths.SKEWED_LR``), with other skews and
    # exponents: written before their first scoring, then scored for each version of
    # the skew (docs/benchmarks.md, "Skewed bowls"), so no longer untouched.
    "held-out-skewed": {
        "lr_skew": 0.8, "lr_n_exp": -0.55, "lr_d_exp": 0.25, "batch_d_exp": 0.40,
        "batch_n_exp": 0.1, "alpha": 0.42, "beta": 0.30,
    },
    "held-out-skewed-2": {
        "lr_skew": 2.5, "lr_penalty": 0.012, "lr_n_exp": -0.30, "lr_d_exp": 0.05,
        "batch_d_exp": 0.60, "alpha": 0.28, "beta": 0.40,
    },
    # Written with the warp (docs/benchmarks.md, "Skewed bowls"), before its first score.
    "held-out-skewed-3": {
        "lr_skew": 1.2, "lr_penalty": 0.03, "lr_n_exp": -0.45, "lr_d_exp": 0.15,
        "batch_d_exp": 0.45, "alpha": 0.36, "beta": 0.33,
    },
}  # fmt: skip
# Ground truths never used while developing the fit or its intervals.
HELD_OUT = (
    "held-out", "held-out-2", "held-out-3", "held-out-skewed", "held-out-skewed-2",
    "held-out-skewed-3",
)  # fmt: skip
NOISE_SHARES = (0.01, 0.03)
MODEL_SIZES = np.geomspace(1e7, 1e9, 7)
TOKENS_PER_PARAM = (5.0, 20.0, 80.0)
LR_GRID = np.geomspace(1e-4, 0.2, 12)
BATCH_GRID = 2 ** np.arange(2, 12)  # sequences of 1024 tokens
FIXED = {"warmup_fraction": 0.05, "weight_decay": 0.03, "schedule": "wsd"}
FIT_SHARE = 0.10
N_EVAL = 3


def sweep_cells(
    model_sizes=MODEL_SIZES, tokens_per_param=TOKENS_PER_PARAM
) -> list[tuple[float, float]]:
    """Every (N, D) cell of the sweep, by increasing compute."""
    cells = [(float(n), float(n * r)) for n in model_sizes for r in tokens_per_param]
    return sorted(cells, key=lambda cell: cell[0] * cell[1])


def smallest_cells(cells: list[tuple[float, float]], share: float = FIT_SHARE):
    """The smallest cells whose runs use at most ``share`` of the sweep's compute."""
    compute = np.array([n * d for n, d in cells])
    within = np.cumsum(compute) <= share * compute.sum()
    return [cell for cell, keep in zip(cells, within, strict=True) if keep]


def run_sweep(
    config: TestbedConfig, cells: list[tuple[float, float]], *, noise_share: float, seed: int
) -> list[Observation]:
    """Every grid point of every cell on the testbed; noise ``noise_share`` of the
    cell's reducible loss; diverged runs failed."""
    testbed = Testbed(config)
    rng = np.random.default_rng(seed)
    observations = []
    lr, batch = (g.ravel() for g in np.meshgrid(LR_GRID, BATCH_GRID))
    for n_params, tokens in cells:
        params = {
            "n_params": np.full(lr.size, n_params),
            "tokens": np.full(lr.size, tokens),
            "learning_rate": lr,
            "batch_size": batch,
            **{
                k: np.full(lr.size, v, dtype=object if k == "schedule" else float)
                for k, v in FIXED.items()
            },
        }
        loss = testbed.noiseless_loss(params)
        reducible = float(testbed.chinchilla_loss(n_params, tokens)) - config.loss_e
        loss = loss + noise_share * reducible * rng.standard_normal(lr.size)
        for i in range(lr.size):
            row = {
                "n_params": n_params, "tokens": tokens, "learning_rate": float(lr[i]),
                "batch_size": int(batch[i]), **FIXED,
            }  # fmt: skip
            failed = not math.isfinite(loss[i])
            observations.append(
                Observation(row, math.nan if failed else float(loss[i]), 1.0, failed)
            )
    return observations


def baseline_laws(observations: list[Observation]) -> tuple[np.ndarray, np.ndarray]:
    """Least squares through each cell's grid-best run: coefficients of
    ``ln lr = a + p ln N + q ln D`` and ``ln B = b + r ln D``."""
    best: dict[tuple[float, float], Observation] = {}
    for obs in observations:
        if obs.failed:
            continue
        key = (obs.params["n_params"], obs.params["tokens"])
        if key not in best or obs.loss < best[key].loss:
            best[key] = obs
    rows = list(best.values())
    log_n = np.log([o.params["n_params"] for o in rows])
    log_d = np.log([o.params["tokens"] for o in rows])
    ones = np.ones(len(rows))
    lr = np.linalg.lstsq(
        np.column_stack([ones, log_n, log_d]),
        np.log([o.params["learning_rate"] for o in rows]),
        rcond=None,
    )[0]
    batch = np.linalg.lstsq(
        np.column_stack([ones, log_d]), np.log([o.params["batch_size"] for o in rows]), rcond=None
    )[0]
    return lr, batch


def _loss_at(testbed: Testbed, n_params: float, tokens: float, lr: float, batch: float) -> float:
    """Noiseless loss at ``lr`` and ``batch`` (snapped to the grid's powers of two)."""
    batch = float(np.clip(2 ** round(math.log2(batch)), BATCH_GRID[0], BATCH_GRID[-1]))
    params = {"n_params": n_params, "tokens": tokens, "learning_rate": lr, "batch_size": batch}
    loss = float(testbed.noiseless_loss(params | FIXED))
    return loss if math.isfinite(loss) else math.inf


def _grid_best(testbed: Testbed, n_params: float, tokens: float) -> float:
    lr, batch = (g.ravel() for g in np.meshgrid(LR_GRID, BATCH_GRID))
    fixed = {
        k: np.full(lr.size, v, dtype=object if k == "schedule" else float) for k, v in FIXED.items()
    }
    params = {"n_params": np.full(lr.size, n_params), "tokens": np.full(lr.size, tokens)}
    loss = testbed.noiseless_loss(params | {"learning_rate": lr, "batch_size": batch} | fixed)
    return float(np.nanmin(loss))


def largest_cells_errors(config, rules, observations, cells) -> list[dict]:
    """Per evaluated cell: |log10 error| of lr and batch and the loss excess (relative
    to the grid's best) of the rules and the baseline."""
    testbed = Testbed(config)
    lr_coef, batch_coef = baseline_laws(observations)
    rows = []
    for n_params, tokens in cells[-N_EVAL:]:
        truth = testbed.optimal_hparams(n_params, tokens)
        prediction = rules.predict(n_params=n_params, tokens=tokens)
        ours = {k: prediction.values[k].estimate for k in ("learning_rate", "batch_size")}
        x = np.array([1.0, math.log(n_params), math.log(tokens)])
        base = {
            "learning_rate": math.exp(lr_coef @ x),
            "batch_size": math.exp(batch_coef @ x[[0, 2]]),
        }
        best = _grid_best(testbed, n_params, tokens)
        row = {"n_params": n_params, "tokens": tokens}
        for label, values in (("rules", ours), ("baseline", base)):
            if any(v is None for v in values.values()):
                row[label] = None
                continue
            loss = _loss_at(testbed, n_params, tokens, *values.values())
            row[label] = {
                **{k: abs(math.log10(v / float(truth[k]))) for k, v in values.items()},
                "loss_excess": loss / best - 1.0,
            }
        rows.append(row)
    return rows


def prediction_at_100x(rules):
    """The rules' prediction at 100x the largest compute they were fitted on: the
    scale every rules bench scores."""
    return rules.predict(compute=100.0 * rules.observed.compute_max)


def coverage_at_100x(config: TestbedConfig, prediction) -> dict:
    """Whether each 90% interval of ``prediction`` (``prediction_at_100x``) holds the
    truth at its compute, and its width (log10 of high / low)."""
    testbed = Testbed(config)
    n_star, d_star, loss = (float(v) for v in testbed.compute_optimal(prediction.compute))
    truth = testbed.optimal_hparams(n_star, d_star)
    intervals = {
        "learning_rate": prediction.values["learning_rate"],
        "batch_size": prediction.values["batch_size"],
        "n_star": prediction.n_params,
        "d_star": prediction.tokens,
        "loss": prediction.loss,
    }
    values = {
        "learning_rate": float(truth["learning_rate"]),
        "batch_size": float(truth["batch_size"]),
        "n_star": n_star,
        "d_star": d_star,
        "loss": loss,
    }
    out = {}
    for name, interval in intervals.items():
        if (
            interval is None
            or interval.low is None
            or (hasattr(interval, "supported") and not interval.supported)
        ):
            out[name] = None
            continue
        out[name] = {
            "covered": bool(interval.low <= values[name] <= interval.high),
            "width_dex": math.log10(interval.high / interval.low),
            "error_dex": math.log10(interval.estimate / values[name]),
        }
    return out


def one_study(truth: str, noise_share: float, seed: int, fit_share: float = FIT_SHARE) -> dict:
    config = TestbedConfig(**SWEEP_TRUTHS[truth])
    cells = sweep_cells()
    fit_cells = smallest_cells(cells, fit_share)
    observations = run_sweep(config, fit_cells, noise_share=noise_share, seed=seed)
    space = TestbedObjective(config).default_space()
    row = {"truth": truth, "noise_share": noise_share, "seed": seed, "fit_cells": len(fit_cells)}
    start = time.perf_counter()
    try:
        rules = fit_scaling_rules(observations, space, AXES, seed=seed, n_bootstrap=100)
    except NotEnoughDataError as exc:
        return row | {"refused": str(exc)}
    row["fit_seconds"] = time.perf_counter() - start
    row["compute_share"] = sum(n * d for n, d in fit_cells) / sum(n * d for n, d in cells)
    row["largest"] = largest_cells_errors(config, rules, observations, cells)
    row["coverage"] = coverage_at_100x(config, prediction_at_100x(rules))
    law = rules.rule("learning_rate").vs_size_tokens
    row["lr_exponents"] = None if law is None else law.coef[1:]
    row["lr_exponents_true"] = [config.lr_n_exp, config.lr_d_exp]
    return row


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def tables(rows: list[dict]) -> str:
    lines = [
        "| truth | noise | lr dex: rules / baseline | batch dex: rules / baseline "
        "| loss excess: rules / baseline |",
        "|---|---|---|---|---|",
    ]
    keys = sorted({(r["truth"], r["noise_share"]) for r in rows})
    for truth, noise in [*keys, ("all", None)]:
        cell = [
            c
            for r in rows
            if (truth == "all" or (r["truth"], r["noise_share"]) == (truth, noise))
            and "largest" in r
            for c in r["largest"]
            if c["rules"] and c["baseline"]
        ]

        def pair(key: str, scale: float = 1.0, fmt: str = ".3f", cell=cell) -> str:
            ours = _mean([c["rules"][key] for c in cell]) * scale
            base = _mean([c["baseline"][key] for c in cell]) * scale
            return f"{ours:{fmt}} / {base:{fmt}}"

        label = "all" if noise is None else f"{noise:.0%}"
        lines.append(
            f"| {truth} | {label} | {pair('learning_rate')} | {pair('batch_size')} "
            f"| {pair('loss_excess', 100.0, '.3f')}% |"
        )
    lines += ["", coverage_table(rows)]
    refused = [r for r in rows if "refused" in r]
    lines.append(f"\nrefused: {len(refused)} of {len(rows)}")
    return "\n".join(lines)


def coverage_table(rows: list[dict]) -> str:
    """Coverage and median width (dex) of each 90% interval at 100x, over the
    development truths, the held-out ones and all."""
    parts = {
        "development": [r for r in rows if r["truth"] not in HELD_OUT],
        "held-out": [r for r in rows if r["truth"] in HELD_OUT],
        "all": rows,
    }
    parts = {label: part for label, part in parts.items() if part}
    lines = [
        "| interval at 100x | " + " | ".join(f"{label}: coverage, width" for label in parts) + " |",
        "|---|" + "---|" * len(parts),
    ]
    for name in ("learning_rate", "batch_size", "n_star", "d_star", "loss"):
        cells = []
        for part in parts.values():
            got = [r["coverage"][name] for r in part if "coverage" in r and r["coverage"][name]]
            covered = sum(g["covered"] for g in got)
            width = float(np.median([g["width_dex"] for g in got])) if got else math.nan
            share = covered / max(len(got), 1)
            cells.append(f"{covered}/{len(got)} ({share:.0%}), {width:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--truths", default=",".join(SWEEP_TRUTHS))
    parser.add_argument("--fit-share", type=float, default=FIT_SHARE)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for truth in args.truths.split(","):
        for noise in NOISE_SHARES:
            for seed in seeds:
                rows.append(one_study(truth, noise, seed, args.fit_share))
                print(truth, noise, seed, f"{rows[-1].get('fit_seconds', 0):.1f} s", flush=True)
    print(f"fit cells: {rows[0]['fit_cells']} of {len(sweep_cells())}")
    print(tables(rows))
    RESULTS.mkdir(exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    meta = {
        "machine": platform.platform(),
        "date": datetime.now(UTC).isoformat(),
        "commit": commit,
        "fit_share": args.fit_share,
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"designed_sweeps_{stamp}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(path)


if __name__ == "__main__":
    main()
