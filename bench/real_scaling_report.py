"""Numbers and plots of ``bench/real_scaling.py``, read back from the stored study.

``write_report(client, study_id=..., at_scale=..., out=...)`` reads the study, its rules,
its trials and the 10x trials through the API, and writes into ``out``:

- ``summary.md`` and the returned summary dict (the verification, the lr sweep, the
  baselines, the overhead of every trial, MFU where the device has a peak);
- ``front.png``: loss vs cost of every trial, the front, and the 10x trials;
- ``optima-vs-n-d.png``: learning rate and batch of the study's runs vs N and vs D, with
  the fitted laws along the compute-optimal path N*(C), D*(C);
- ``verification.png``: loss vs learning rate at 10x, with the rules' intervals;
- ``rules-report/``: the service's scaling report (every law vs compute, allocation);
- ``trials.jsonl``, ``at-scale.jsonl`` and ``mapping.yaml``: the runs as files
  ``scaletune import --mapping mapping.yaml`` reads back into the same study.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bench.real_scaling_plan import base_label, naive_is_rules, overheads
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
        scaled["verification"] = next(t for t in trials if t["id"] == verification["trial_id"])
    return {
        "study": client.get_study(study_id),
        "rules": ScalingRules.model_validate(client.rules(study_id)),
        "trials": [t for t in trials if t["reason"] != "verification"],
        "verification": verification,
        "scaled": scaled,
    }


def _runs_by_config(scaled: dict[str, Any]) -> dict[str, list[dict[str, Any] | None]]:
    """The trials at scale grouped by configuration (``base_label``), in repeat order."""
    groups: dict[str, list[dict[str, Any] | None]] = {}
    for label, trial in scaled.items():
        groups.setdefault(base_label(label), []).append(trial)
    return groups


def _config_row(runs: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One configuration's runs: its learning rate, each run's loss, and their mean once
    every run has finished without failing (a diverged repeat leaves it without one)."""
    losses = [_loss(t) for t in runs]
    states = [t["state"] if t else "WAITING" for t in runs]
    state = next((s for s in states if s != "COMPLETE"), "COMPLETE")
    first = next((t for t in runs if t is not None), None)
    return {
        "learning_rate": first["params"]["learning_rate"] if first else None,
        "params": first["params"] if first else None,
        "losses": losses,
        "loss": float(np.mean([v for v in losses if v is not None]))
        if state == "COMPLETE"
        else None,
        "state": state,
    }


def seed_spread(groups: dict[str, list[dict[str, Any] | None]]) -> float | None:
    """How far a trial seed moves the loss at scale: the pooled standard deviation of
    ln loss between the repeats of each configuration (None without repeats)."""
    squares, dof = 0.0, 0
    for runs in groups.values():
        logs = np.log([loss for loss in map(_loss, runs) if loss is not None])
        if len(logs) >= 2:
            squares += float(np.sum((logs - logs.mean()) ** 2))
            dof += len(logs) - 1
    return math.sqrt(squares / dof) if dof else None


def _paired_gaps(sweep: dict[str, dict[str, Any]]) -> list[float]:
    """Per trial seed that every sweep point finished: the rules' configuration (x1)
    against that seed's best point."""
    repeats = min(len(row["losses"]) for row in sweep.values())
    gaps = []
    for r in range(repeats):
        losses = {label: row["losses"][r] for label, row in sweep.items()}
        if None not in losses.values() and losses.get("lr-x1") is not None:
            gaps.append(losses["lr-x1"] / min(losses.values()) - 1.0)
    return gaps


def summarise(data: dict[str, Any], *, scale_factor: float) -> dict[str, Any]:
    """The headline numbers: the rules' prediction at ``scale_factor`` x the largest
    compute, against the sweep and the baselines there (each a mean over its repeats)."""
    rules: ScalingRules = data["rules"]
    prediction = rules.predict(compute=scale_factor * rules.observed.compute_max)
    scaled = data["scaled"]
    groups = _runs_by_config({k: v for k, v in scaled.items() if k != "verification"})
    sweep = {label: _config_row(runs) for label, runs in groups.items() if label.startswith("lr-x")}
    finished = {k: v for k, v in sweep.items() if v["loss"] is not None}
    best_label = min(finished, key=lambda k: finished[k]["loss"]) if finished else None
    predicted_loss = sweep.get("lr-x1", {}).get("loss")
    lr = prediction.values["learning_rate"]
    summary: dict[str, Any] = {
        "study_id": data["study"]["id"],
        "scale_factor": scale_factor,
        "trials": len(data["trials"]),
        "completed": sum(t["state"] == "COMPLETE" for t in data["trials"]),
        # The study's own trials: the service's spent cost counts the /verify trial too,
        # which runs outside the budget.
        "spent_tflop": sum(t["cost_seconds"] or 0.0 for t in data["trials"]),
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
        "verification_loss": _loss(scaled.get("verification")),
        "repeats": max((len(runs) for runs in groups.values()), default=0),
        "seed_sd": seed_spread(groups),
        "sweep": sweep,
        "sweep_best": best_label,
    }
    if best_label is not None and predicted_loss is not None:
        best = finished[best_label]
        gap = predicted_loss / best["loss"] - 1.0
        inside = lr.low is not None and lr.low <= best["learning_rate"] <= lr.high
        summary["gap_to_sweep_best"] = gap
        summary["gap_by_seed"] = _paired_gaps(sweep)
        summary["best_lr_in_interval"] = inside
        summary["target_met"] = gap <= TARGET_GAP and inside
    summary["baselines"] = {}
    for label in ("naive", "carbs"):
        if label in groups:
            row = _config_row(groups[label])
            both = row["loss"] is not None and predicted_loss is not None
            row["vs_rules"] = row["loss"] / predicted_loss - 1.0 if both else None
            summary["baselines"][label] = row
    predicted = (data["verification"] or {}).get("params")
    ours = [t for t in data["trials"] if t["reason"] != "verification"]
    if "naive" not in groups and "lr-x1" in sweep and predicted and naive_is_rules(predicted, ours):
        # Not run (bench.real_scaling_plan.at_scale_configs): it is the rules' own runs.
        summary["baselines"]["naive"] = {**sweep["lr-x1"], "vs_rules": 0.0, "same_as_rules": True}
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
    styles |= {"carbs": ("D", "tab:purple", 50), "verification": ("*", "tab:red", 160)}
    x = f"{scale_factor:g}x"
    names = {"lr-x1": f"{x}: rules", "naive": f"{x}: naive", "carbs": f"{x}: CARBS"}
    names["verification"] = names["lr-x1"]
    for label, trial in data["scaled"].items():
        if _loss(trial) is not None:
            config = base_label(label)
            marker, color, size = styles.get(config, ("o", "tab:green", 25))
            ax.scatter(
                trial["cost_seconds"], trial["loss"], marker=marker, color=color, s=size,
                label=names.get(config, f"{x}: lr sweep"), zorder=3,
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
    """The sweep's mean loss against lr (each run a dot), the predicted lr and loss
    intervals, the rules' configuration and the baselines."""
    x = f"{summary['scale_factor']:g}x"
    figure, (ax,) = _figure()
    rows = sorted(summary["sweep"].values(), key=lambda row: row["learning_rate"])
    for row in rows:
        runs = [loss for loss in row["losses"] if loss is not None]
        ax.scatter([row["learning_rate"]] * len(runs), runs, s=12, color="tab:green", alpha=0.5)
    means = [(row["learning_rate"], row["loss"]) for row in rows if row["loss"] is not None]
    if means:
        label = f"lr sweep at {x}" + (
            f" (mean of {summary['repeats']} seeds; dots: each)" if summary["repeats"] > 1 else ""
        )
        ax.plot(*zip(*means, strict=True), "o-", color="tab:green", label=label)
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
    rules_row = summary["sweep"].get("lr-x1") or {}
    if rules_row.get("loss") is not None:
        ax.scatter(
            rules_row["learning_rate"], rules_row["loss"], marker="*", s=200,
            color="tab:red", label="rules' prediction", zorder=3,
        )  # fmt: skip
    for label, marker, color in (("naive", "s", "tab:orange"), ("carbs", "D", "tab:purple")):
        row = summary["baselines"].get(label) or {}
        if row.get("loss") is not None:
            ax.scatter(
                row["learning_rate"], row["loss"], marker=marker, color=color,
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
    write_mapping(data["study"]["spec"], out / "mapping.yaml")
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


def write_mapping(spec: dict[str, Any], path: Path) -> None:
    """The ``scaletune import --mapping`` file for the runs files beside it: the study's
    own space and scaling axes (an axis that is a metric of each run read from its
    ``metrics.*`` column). Why: a space inferred from the runs is close, not the same (a
    warmup fraction read as log rather than logit, depths that all happen to be powers
    of two as pow2, no limits), so the rules refitted from the files would differ from
    the study's."""
    import yaml

    names = {param["name"] for param in spec["space"]["params"]}
    axes = {
        axis: f"params.{column}" if column in names else f"metrics.{column}"
        for axis, column in spec["scaling"].items()
        if column is not None
    }
    header = "# scaletune import trials.jsonl --mapping mapping.yaml: the study's space and axes\n"
    body = yaml.safe_dump({**axes, "space": spec["space"]["params"]}, sort_keys=False)
    path.write_text(header + body)


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
        f"| trial at {summary['scale_factor']:g}x | learning rate | loss "
        f"(mean of {summary['repeats']}) | each seed |",
        "| --- | --- | --- | --- |",
    ]
    rows = sorted(summary["sweep"].items(), key=lambda kv: kv[1]["learning_rate"])
    rows += [
        (
            f"baseline {label}"
            + (" (the rules' configuration)" if row.get("same_as_rules") else ""),
            row,
        )
        for label, row in summary["baselines"].items()
    ]
    for label, row in rows:
        loss = row["state"].lower() if row["loss"] is None else f"{row['loss']:.4f}"
        if "vs_rules" in row:
            loss += f" ({_pct(row['vs_rules'])} vs rules)"
        each = ", ".join("-" if v is None else f"{v:.4f}" for v in row["losses"])
        lr_value = row["learning_rate"] if row["learning_rate"] is not None else float("nan")
        lines.append(f"| {label} | {lr_value:.3g} | {loss} | {each} |")
    seed_sd, verification_loss = summary["seed_sd"], summary["verification_loss"]
    lines += [
        "",
        f"Sweep best: {summary['sweep_best']}; rules' config vs it: "
        f"{_pct(summary.get('gap_to_sweep_best'))} (per seed: "
        f"{', '.join(_pct(g) for g in summary.get('gap_by_seed', [])) or '-'}); best lr in "
        f"the predicted interval: {summary.get('best_lr_in_interval')}; target met: "
        f"{summary.get('target_met')}.",
        "",
        "Seed spread (sd of ln loss between repeats of one configuration): "
        + ("-" if seed_sd is None else f"{seed_sd:.2%}")
        + "; the /verify trial (the rules' configuration under the study's next seed): "
        + ("-" if verification_loss is None else f"{verification_loss:.4f}")
        + ".",
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
