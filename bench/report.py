"""Summaries of benchmark runs: per-method statistics, the issue's bar, a Markdown table."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.searchers import METHODS, PEERS


def summarise(runs: list[dict[str, Any]], checkpoints) -> dict[str, Any]:
    """Mean and spread over seeds per method, and how ours compares with the best peer."""
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    per_method = {
        m: _method_stats([r for r in runs if r["method"] == m], checkpoints) for m in methods
    }
    summary: dict[str, Any] = {"methods": per_method}
    peers = [m for m in methods if m in PEERS]
    if "ours" in per_method and peers:
        final = str(checkpoints[-1])
        best = min(peers, key=lambda m: per_method[m]["regret_mean"][final])
        target = per_method[best]["regret_mean"][final]
        ours = per_method["ours"]
        reach = _first_fraction_below(ours["regret_curve_mean"], target)
        summary["bar"] = {
            "best_peer": best,
            "best_peer_final_regret": target,
            "ours_final_regret": ours["regret_mean"][final],
            "ratio_ours_to_best_peer": ours["regret_mean"][final] / target if target else None,
            "half_of_best_peer": ours["regret_mean"][final] <= 0.5 * target,
            "budget_fraction_to_reach_best_peer": reach,
            "reached_within_40_percent": reach is not None and reach <= 0.4 + 1e-9,
        }
    return summary


def _method_stats(runs: list[dict[str, Any]], checkpoints) -> dict[str, Any]:
    at = np.array([[r["regret_at"][str(f)] for f in checkpoints] for r in runs])
    ask_ms = np.concatenate([r["ask_ms_per_suggestion"] for r in runs])
    return {
        "n_runs": len(runs),
        "regret_mean": dict(zip(map(str, checkpoints), at.mean(axis=0).tolist(), strict=True)),
        "regret_std": dict(zip(map(str, checkpoints), at.std(axis=0).tolist(), strict=True)),
        "regret_curve_mean": {
            f: float(np.mean([r["regret_curve"][f] for r in runs])) for f in runs[0]["regret_curve"]
        },
        "n_trials_mean": float(np.mean([r["n_trials"] for r in runs])),
        "n_failed_mean": float(np.mean([r["n_failed"] for r in runs])),
        "n_refused_mean": float(np.mean([r["n_refused"] for r in runs])),
        "spent_fraction_mean": float(
            np.mean([r["spent_seconds"] / r["budget_seconds"] for r in runs])
        ),
        "ask_ms_p50": float(np.percentile(ask_ms, 50)) if ask_ms.size else None,
        "ask_ms_p95": float(np.percentile(ask_ms, 95)) if ask_ms.size else None,
        "wall_seconds_mean": float(np.mean([r["wall_seconds"] for r in runs])),
    }


def _first_fraction_below(curve: dict[str, float], target: float) -> float | None:
    for fraction, regret in sorted(curve.items(), key=lambda item: float(item[0])):
        if regret <= target:
            return float(fraction)
    return None


def markdown_table(result: dict[str, Any]) -> str:
    """The table for docs/benchmarks.md, with the machine, date, settings and command."""
    summary, settings, mach = result["summary"], result["settings"], result["machine"]
    lines = [
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), Python {mach['python']}, "
        f"commit {mach.get('commit', 'unknown')}; "
        f"date {result['date']}; {settings['seeds']} seed(s); budget {settings['budget']:g}x the "
        f"start point's cost; at most {settings['max_trials']} trials per run; "
        f"{settings['jobs']} run(s) in parallel.",
        "",
        f"Command: `{result['command'].strip()}`",
        "",
        "| method | regret @25% | regret @50% | regret @100% | trials | failed | refused "
        "| budget spent | ask p50 ms | ask p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in summary["methods"].items():
        regrets = [
            f"{s['regret_mean'][f]:.4f} ± {s['regret_std'][f]:.4f}" for f in s["regret_mean"]
        ]
        lines.append(
            f"| {method} | {' | '.join(regrets)} | {s['n_trials_mean']:.1f} "
            f"| {s['n_failed_mean']:.1f} | {s['n_refused_mean']:.1f} "
            f"| {100 * s['spent_fraction_mean']:.0f}% | {s['ask_ms_p50']:.1f} "
            f"| {s['ask_ms_p95']:.1f} |"
        )
    bar = summary.get("bar")
    if bar:
        reach = bar["budget_fraction_to_reach_best_peer"]
        lines += [
            "",
            f"Best peer: {bar['best_peer']} (final regret {bar['best_peer_final_regret']:.4f}); "
            f"ours {bar['ours_final_regret']:.4f}, ratio {bar['ratio_ours_to_best_peer']:.2f} "
            f"(bar <= 0.5: {'met' if bar['half_of_best_peer'] else 'NOT met'}); ours reaches "
            f"the best peer's final regret at "
            f"{'never' if reach is None else f'{100 * reach:.0f}%'} of the budget "
            f"(bar <= 40%: {'met' if bar['reached_within_40_percent'] else 'NOT met'}).",
        ]
    return "\n".join(lines) + "\n"
