"""Numbers and plots of ``bench/real_scaling.py``, read back from the stored study.

``write_report(client, study_id=..., at_scale=..., out=...)`` reads the study, its rules,
its trials and the 10x trials through the API, and writes into ``out``:

- ``summary.md`` and the returned summary dict (the verification, the lr sweep, the
  baselines, the overhead of every trial, MFU where the device has a peak);
- ``front.png``: loss vs cost of every trial, the front, and the 10x trials;
- ``optima-vs-n-d.png``: learning rate and batch of the study's runs vs N and vs D, with
  the fitted laws along the compute-optimal path N*(C), D*(C);
- ``verification.png``: loss vs learning rate at 10x, with the rules' intervals;
- ``rules-report/``: the service's scaling report (every law vs compute, allocation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bench.real_scaling_plan import overheads
from search.pareto import pareto_mask
from search.scaling import ScalingRules
from search.scaling.rules import inverse
from service.domain import trial_observation
from service.interop.client import ScaletuneClient
from service.reads.reports.scaling import write_scaling_report

TARGET_GAP = 0.005  # the prediction's loss within 0.5% of the sweep's best
LONG_TRIAL_S = 30.0  # the overhead target (<= 10%) is for trials this long or longer


def _trials(client: ScaletuneClient, study_id: int) -> list[dict[str, Any]]:
    out, offset = [], 0
    while True:
        page = client.list_trials(study_id, offset=offset, limit=500)
        out += [client.get_trial(t["id"]) for t in page["data"]]
        offset += len(page["data"])
        if offset >= page["count"] or not page["data"]:
            return out


def _loss(trial: dict[str, Any] | None) -> float | None:
    return None if trial is None or trial["state"] != "COMPLETE" else trial["loss"]


def collect(
    client: ScaletuneClient, *, study_id: int, at_scale: dict[str, int] | None
) -> dict[str, Any]:
    """Everything the report needs, read through the API; ``at_scale`` None: the study
    alone (no verification was run)."""
    trials = _trials(client, study_id)
    verification, scaled = None, {}
    if at_scale is not None:
        verification = client.verification(study_id)
        scaled = {label: (_trials(client, sid) or [None])[0] for label, sid in at_scale.items()}
        scaled["lr-x1"] = next(t for t in trials if t["id"] == verification["trial_id"])
    return {
        "study": client.get_study(study_id),
        "rules": ScalingRules.model_validate(client.rules(study_id)),
        "trials": [t for t in trials if t["reason"] != "verification"],
        "verification": verification,
        "scaled": scaled,
    }


def summarise(data: dict[str, Any], *, scale_factor: float) -> dict[str, Any]:
    """The headline numbers: the rules' prediction at ``scale_factor`` x the largest
    compute, against the sweep and the baselines there."""
    rules: ScalingRules = data["rules"]
    prediction = rules.predict(compute=scale_factor * rules.observed.compute_max)
    scaled = data["scaled"]
    sweep = {
        label: {
            "learning_rate": t["params"]["learning_rate"],
            "loss": _loss(t),
            "state": t["state"],
        }
        for label, t in scaled.items()
        if label.startswith("lr-x") and t is not None
    }
    finished = {k: v for k, v in sweep.items() if v["loss"] is not None}
    best_label = min(finished, key=lambda k: finished[k]["loss"]) if finished else None
    predicted_loss = sweep.get("lr-x1", {}).get("loss")
    lr = prediction.values["learning_rate"]
    summary: dict[str, Any] = {
        "study_id": data["study"]["id"],
        "scale_factor": scale_factor,
        "trials": len(data["trials"]),
        "completed": sum(t["state"] == "COMPLETE" for t in data["trials"]),
        "spent_tflop": data["study"]["progress"]["spent_cost"],
        "observed_compute": [rules.observed.compute_min, rules.observed.compute_max],
        "decades": math.log10(rules.observed.compute_max / rules.observed.compute_min),
        "prediction": {
            "compute": prediction.compute,
            "params": (data["verification"] or {}).get("params"),
            "learning_rate": [lr.estimate, lr.low, lr.high],
            "batch_size": _interval(prediction.values.get("batch_size")),
            "warnings": prediction.warnings,
        },
        "verification": (data["verification"] or {}).get("report"),
        "sweep": sweep,
        "sweep_best": best_label,
    }
    if best_label is not None and predicted_loss is not None:
        best = finished[best_label]
        gap = predicted_loss / best["loss"] - 1.0
        inside = lr.low is not None and lr.low <= best["learning_rate"] <= lr.high
        summary["gap_to_sweep_best"] = gap
        summary["best_lr_in_interval"] = inside
        summary["target_met"] = gap <= TARGET_GAP and inside
    summary["baselines"] = {
        label: {
            "params": t["params"] if t else None,
            "loss": _loss(t),
            "state": t["state"] if t else "WAITING",
            "vs_rules": None
            if _loss(t) is None or predicted_loss is None
            else _loss(t) / predicted_loss - 1.0,
        }
        for label, t in scaled.items()
        if label in ("naive", "carbs")
    }
    summary["overheads"] = _overhead_rows(data["trials"] + [t for t in scaled.values() if t])
    return summary


def _interval(value) -> list[float | None] | None:
    return None if value is None else [value.estimate, value.low, value.high]


def _overhead_rows(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Every finished trial's split; the statistics leave out trials delivered more than
    once (their wall time holds a lost worker's recovery, e.g. the resume check's crash)."""
    rows = []
    for trial in trials:
        parts = overheads(trial)
        if parts is not None:
            metrics = trial.get("metrics") or {}
            deliveries = metrics.get("deliveries", 1) + trial.get("attempt", 0)
            rows.append(
                {
                    "trial_id": trial["id"],
                    **parts,
                    "mfu": metrics.get("mfu"),
                    "deliveries": deliveries,
                }
            )
    clean = [r for r in rows if r["deliveries"] == 1]
    long = [r["share"] for r in clean if r["wall"] >= LONG_TRIAL_S]
    return {
        "rows": rows,
        "redelivered": len(rows) - len(clean),
        "long_trials": len(long),
        "long_share_median": float(np.median(long)) if long else None,
        "long_share_max": max(long) if long else None,
        "all_share_median": float(np.median([r["share"] for r in clean])) if clean else None,
    }


# -- plots ---------------------------------------------------------------------------------


def _figure(ncols: int = 1, nrows: int = 1, size=(6.4, 4.2)) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=110, layout="constrained")
    return figure, np.atleast_1d(figure.subplots(nrows, ncols)).ravel()


def plot_front(data: dict[str, Any], path: Path, *, scale_factor: float = 10.0) -> None:
    done = [t for t in data["trials"] if t["state"] == "COMPLETE"]
    cost = np.array([t["cost_seconds"] for t in done])
    loss = np.array([t["loss"] for t in done])
    figure, (ax,) = _figure()
    ax.set_xscale("log")
    ax.scatter(cost, loss, s=10, color="0.65", label="study trials")
    front = pareto_mask(loss, cost)
    order = np.argsort(cost[front])
    ax.plot(cost[front][order], loss[front][order], "o-", color="tab:blue", label="front")
    styles = {"lr-x1": ("*", "tab:red", 160), "naive": ("s", "tab:orange", 50)}
    styles["carbs"] = ("D", "tab:purple", 50)
    for label, trial in data["scaled"].items():
        if _loss(trial) is not None:
            marker, color, size = styles.get(label, ("o", "tab:green", 25))
            x = f"{scale_factor:g}x"
            name = {"lr-x1": f"{x}: rules", "naive": f"{x}: naive", "carbs": f"{x}: CARBS"}
            ax.scatter(
                trial["cost_seconds"], trial["loss"], marker=marker, color=color, s=size,
                label=name.get(label, f"{x}: lr sweep"), zorder=3,
            )  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set(xlabel="cost (training TFLOP)", ylabel="validation loss (nats/byte)")
    ax.set_title(f"Trials, front, and the trials at {scale_factor:g}x the largest compute")
    ax.set_ylim(top=float(np.quantile(loss, 0.9)))
    figure.savefig(path)


def plot_optima(data: dict[str, Any], path: Path, *, scale_factor: float) -> None:
    rules: ScalingRules = data["rules"]
    done = [t for t in data["trials"] if t["state"] == "COMPLETE"]
    n = np.array([t["metrics"][rules.axes.n_params] for t in done], dtype=float)
    d = np.array([t["params"]["tokens"] for t in done], dtype=float)
    loss = np.array([t["loss"] for t in done])
    front = pareto_mask(loss, np.array([t["cost_seconds"] for t in done]))
    grid = np.geomspace(rules.observed.compute_min, scale_factor * rules.observed.compute_max, 60)
    path_n = path_d = None
    if rules.allocation is not None and rules.allocation.n_params and rules.allocation.tokens:
        path_n = np.exp(rules.allocation.n_params.predict(np.log(grid)[:, None])[0])
        path_d = np.exp(rules.allocation.tokens.predict(np.log(grid)[:, None])[0])
    figure, axes = _figure(2, 2)
    for row, name in enumerate(("learning_rate", "batch_size")):
        values = np.array([float(t["params"][name]) for t in done])
        rule = rules.rule(name)
        line = _law_along(rule, grid, path_n, path_d)
        for col, (x, label, path_x) in enumerate(((n, "N", path_n), (d, "D (tokens)", path_d))):
            ax = axes[2 * row + col]
            ax.set(xscale="log", yscale="log", xlabel=label, ylabel=name)
            ax.scatter(x, values, s=8, color="0.7", label="trials")
            ax.scatter(x[front], values[front], s=22, color="tab:blue", label="front")
            if line is not None and path_x is not None:
                estimate, low, high, source = line
                ax.plot(path_x, estimate, color="tab:red", label=f"law ({source})")
                ax.fill_between(path_x, low, high, color="tab:red", alpha=0.2)
            ax.legend(fontsize=7)
    figure.suptitle(f"Optima vs N and D; laws along N*(C), D*(C) up to {scale_factor:g}x")
    figure.savefig(path)


def _law_along(rule, grid, path_n, path_d):
    """A rule's estimate and interval along the compute-optimal path, or None."""
    if not rule.supported:
        return None
    if rule.vs_size_tokens is not None and path_n is not None:
        features, source = np.column_stack([np.log(path_n), np.log(path_d)]), "ln N, ln D"
        law = rule.vs_size_tokens
    elif rule.vs_compute is not None:
        features, source, law = np.log(grid)[:, None], "ln C", rule.vs_compute
    else:
        return None
    estimate, low, high = (inverse(rule.transform, v) for v in law.predict(features))
    return estimate, low, high, source


def plot_verification(data: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    x = f"{summary['scale_factor']:g}x"
    figure, (ax,) = _figure()
    sweep = sorted((v["learning_rate"], v["loss"]) for v in summary["sweep"].values() if v["loss"])
    if sweep:
        ax.plot(*zip(*sweep, strict=True), "o-", color="tab:green", label=f"lr sweep at {x}")
    lr = summary["prediction"]["learning_rate"]
    if lr[1] is not None:
        ax.axvspan(lr[1], lr[2], color="tab:red", alpha=0.12, label="predicted lr interval")
    report = summary.get("verification") or {}
    if report.get("predicted"):
        predicted = report["predicted"]
        ax.axhspan(
            predicted["low"], predicted["high"], color="tab:blue", alpha=0.12,
            label="predicted loss interval",
        )  # fmt: skip
    rules_trial = data["scaled"].get("lr-x1")
    if _loss(rules_trial) is not None:
        ax.scatter(
            rules_trial["params"]["learning_rate"], rules_trial["loss"], marker="*", s=200,
            color="tab:red", label="rules' prediction", zorder=3,
        )  # fmt: skip
    for label, marker, color in (("naive", "s", "tab:orange"), ("carbs", "D", "tab:purple")):
        trial = data["scaled"].get(label)
        if _loss(trial) is not None:
            ax.scatter(
                trial["params"]["learning_rate"], trial["loss"], marker=marker, color=color,
                label=f"baseline: {label}", zorder=3,
            )  # fmt: skip
    ax.set(xscale="log", xlabel="learning rate", ylabel="validation loss (nats/byte)")
    ax.set_title(f"At {x}: the rules' config, its lr sweep and the baselines")
    ax.legend(fontsize=8)
    figure.savefig(path)


# -- the whole report -----------------------------------------------------------------------


def write_report(
    client: ScaletuneClient,
    *,
    study_id: int,
    at_scale: dict[str, int] | None,
    out: Path,
    scale_factor: float = 10.0,
    refused: str | None = None,
) -> dict[str, Any]:
    """The report; ``at_scale`` None and ``refused`` (the API's reason) when the rules
    could not propose a 10x configuration: then the study's part alone."""
    out.mkdir(parents=True, exist_ok=True)
    data = collect(client, study_id=study_id, at_scale=at_scale)
    summary = summarise(data, scale_factor=scale_factor)
    summary["verification_refused"] = refused
    plot_front(data, out / "front.png", scale_factor=scale_factor)
    plot_optima(data, out / "optima-vs-n-d.png", scale_factor=scale_factor)
    if at_scale is not None:
        plot_verification(data, summary, out / "verification.png")
    observations = [
        trial_observation(
            params=t["params"], loss=t["loss"], cost=t["cost_seconds"] or 0.0,
            failed=t["state"] == "FAILED", suggestion_id=None, metrics=t["metrics"],
        )
        for t in data["trials"]
        if t["state"] in ("COMPLETE", "FAILED")
    ]  # fmt: skip
    write_scaling_report(data["rules"], observations, out / "rules-report")
    write_trials([(str(t["id"]), t) for t in data["trials"]], out / "trials.jsonl")
    write_trials(list(data["scaled"].items()), out / "at-scale.jsonl")
    (out / "summary.md").write_text(markdown(summary))
    return summary


def write_trials(trials: list[tuple[str, dict[str, Any] | None]], path: Path) -> None:
    """``(label, trial)`` pairs' finished trials, one JSON object a line, in the layout
    ``scaletune import`` reads (``params.*``, ``loss``, ``cost``, ``failed``,
    ``metrics.*``; ``label`` names a trial at scale): a study's runs outlive its database,
    so its rules can be refitted and its analysis redone from the files alone."""
    with path.open("w") as out:
        for label, trial in trials:
            if trial is None or trial["state"] not in ("COMPLETE", "FAILED"):
                continue
            loss = _loss(trial)
            row = {
                "label": label,
                "params": trial["params"],
                "loss": loss if loss is not None and math.isfinite(loss) else None,
                "cost": trial["cost_seconds"],
                "failed": trial["state"] == "FAILED",
                "metrics": trial["metrics"],
            }
            out.write(json.dumps(row) + "\n")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2%}"


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown tables (the case study quotes them)."""
    lr = summary["prediction"]["learning_rate"]
    lines = [
        f"Study {summary['study_id']}: {summary['completed']}/{summary['trials']} trials "
        f"complete, {summary['spent_tflop']:.3g} TFLOP, compute "
        f"{summary['observed_compute'][0]:.3g}-{summary['observed_compute'][1]:.3g} FLOPs "
        f"({summary['decades']:.2f} decades).",
        "",
        f"Predicted at {summary['scale_factor']:g}x: compute "
        f"{summary['prediction']['compute']:.3g}, lr "
        f"{_interval_text(lr)}; params `{summary['prediction']['params']}`.",
        "",
        f"Verification: {(summary.get('verification') or {}).get('message')}",
        *(
            [f"Verification refused by the API: {summary['verification_refused']}"]
            if summary.get("verification_refused")
            else []
        ),
        "",
        f"| trial at {summary['scale_factor']:g}x | learning rate | loss |",
        "| --- | --- | --- |",
    ]
    for label, row in sorted(summary["sweep"].items(), key=lambda kv: kv[1]["learning_rate"]):
        loss = row["state"].lower() if row["loss"] is None else f"{row['loss']:.4f}"
        lines.append(f"| {label} | {row['learning_rate']:.3g} | {loss} |")
    for label, row in summary["baselines"].items():
        loss = row["state"].lower() if row["loss"] is None else f"{row['loss']:.4f}"
        lr_value = row["params"]["learning_rate"] if row["params"] else float("nan")
        lines.append(
            f"| baseline {label} | {lr_value:.3g} | {loss} ({_pct(row['vs_rules'])} vs rules) |"
        )
    lines += [
        "",
        f"Sweep best: {summary['sweep_best']}; rules' config vs it: "
        f"{_pct(summary.get('gap_to_sweep_best'))}; best lr in the predicted interval: "
        f"{summary.get('best_lr_in_interval')}; target met: {summary.get('target_met')}.",
        "",
    ]
    o = summary["overheads"]
    lines += [
        f"Overhead (share of wall time not in steady optimizer steps): median "
        f"{_share(o['all_share_median'])} over all trials; trials >= {LONG_TRIAL_S:g} s: "
        f"{o['long_trials']}, median {_share(o['long_share_median'])}, max "
        f"{_share(o['long_share_max'])} ({o['redelivered']} trials delivered twice, "
        "through a lost worker, left out of these figures; their rows say so).",
        "",
        "| trial | wall s | train | dispatch | data | setup | eval | warm-up | overhead | MFU "
        "| deliveries |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(o["rows"], key=lambda r: -r["wall"]):
        mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        cells = [r[k] for k in ("wall", "train", "dispatch", "data", "setup", "eval", "warmup")]
        lines.append(
            f"| {r['trial_id']} | "
            + " | ".join(f"{c:.2f}" for c in cells)
            + f" | {r['share']:.1%} | {mfu} | {r['deliveries']} |"
        )
    return "\n".join(lines) + "\n"


def _interval_text(values: list[float | None]) -> str:
    estimate, low, high = values
    if estimate is None:
        return "not predicted (no supported law; the best observed value is used)"
    return f"{estimate:.3g} [{low:.3g}, {high:.3g}]"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
