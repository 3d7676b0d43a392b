"""A scaling study of real transformer training, and a check of its rules at 10x.

Runs what a user would: the distributed stack (API on PostgreSQL, control worker, two
Celery CPU workers on Redis; ``bench/real_scaling_stack.py``), an ``lm`` study over
width, depth, tokens, learning rate, batch, warmup and weight decay submitted through
the API, then at 10x the largest compute the rules saw:

- the verification trial (``POST /studies/{id}/verify``);
- a learning-rate sweep around its configuration (x0.5, 0.7, 1, 1.4, 2), each run
  ``--repeats`` times under trial seeds 0, 1, ... (the verification trial is one more
  run of x1, under the study's next trial seed), carried on past its edge, two steps at
  a time up to x8 or x1/8, while its best lies there;
- baselines: (a) the best small run scaled naively, (b) CARBS's extrapolation of the
  largest front config by least squares through the front;

each a one-trial study through the same API and workers (``real_scaling_plan``). Then
plots and numbers from the stored study (``real_scaling_report``) and the stack stops.

Resumable: everything is found by name in the database before anything is created, so
rerunning the same command continues a stopped run where it was, and rerunning a
finished one only redraws the report::

    createdb -h 127.0.0.1 -U postgres realscale
    nice -n 10 python bench/real_scaling.py --preset full \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/realscale \\
        --broker-url redis://127.0.0.1:6379/7
    python bench/real_scaling.py --preset gpu ...     # one CUDA worker; reports MFU

The corpus is the default byte-level one (the Python standard library's source).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.real_scaling_plan import (
    BRACKET_DOWN,
    BRACKET_UP,
    PRESETS,
    Preset,
    at_scale_configs,
    bracket_factors,
    fixed_params,
    fixed_study,
    lr_sweep,
    repeat_label,
    study_spec,
    sweep_factor,
    sweep_label,
)
from bench.real_scaling_stack import Stack, StackConfig
from service.interop.client import ApiError, ScaletuneClient

FINAL = ("COMPLETE", "STOPPED")
TENANT = "real-scaling"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class NoRulesError(RuntimeError):
    """The study finished without rules, or with rules that cannot set a 10x config."""


class StaleStudyError(RuntimeError):
    """A 10x study of the same name was run with another configuration."""


class Run:
    """One run of the benchmark against a started stack."""

    def __init__(
        self,
        client: ScaletuneClient,
        preset: Preset,
        name: str,
        seed: int,
        *,
        repeats: int = 1,
        wait: bool = True,
    ) -> None:
        self.client, self.preset, self.name, self.seed = client, preset, name, seed
        self.repeats = repeats  # runs of each 10x configuration, under trial seeds 0, 1, ...
        self.wait = wait  # False: report the trials at scale as they stand

    # -- finding or creating studies by name ---------------------------------------------

    def studies(self) -> dict[str, dict[str, Any]]:
        out, offset = {}, 0
        while True:
            page = self.client.list_studies(offset=offset, limit=500)
            out.update({s["name"]: s for s in page["data"]})
            offset += len(page["data"])
            if offset >= page["count"] or not page["data"]:
                return out

    def ensure_study(self, spec: dict[str, Any]) -> int:
        """The study named ``spec["name"]``: found (and resumed) or created. A one-trial
        study found with another configuration than ``spec``'s is refused: its result
        is not this configuration's (the code that picks it changed since)."""
        existing = self.studies().get(spec["name"])
        if existing is not None:
            wanted = fixed_params(spec)
            if wanted is not None:
                stored = fixed_params(self.client.get_study(existing["id"])["spec"])
                if stored != wanted:
                    raise StaleStudyError(
                        f"study {existing['id']} {spec['name']!r} exists with the "
                        f"configuration {stored}, not {wanted}: its result is not this "
                        "configuration's; run under another --name or database"
                    )
            log(f"study {existing['id']} {spec['name']!r} found ({existing['state']})")
            if existing["state"] == "PAUSED":
                self.client.set_state(existing["id"], "resume")
            return existing["id"]
        created = self.client.create_study(spec)
        log(f"study {created['id']} {spec['name']!r} created")
        return created["id"]

    def wait_final(self, study_ids: list[int], *, what: str, poll_s: float = 5.0) -> None:
        last = ""
        while True:
            details = [self.client.get_study(i) for i in study_ids]
            if all(d["state"] in FINAL for d in details):
                return
            done = sum(d["trials_by_state"].get("COMPLETE", 0) for d in details)
            failed = sum(d["trials_by_state"].get("FAILED", 0) for d in details)
            spent = sum(d["progress"]["spent_cost"] for d in details)
            line = f"{what}: {done} complete, {failed} failed, {spent:.3g} TFLOP spent"
            if line != last:
                log(line)
                last = line
            time.sleep(poll_s)

    # -- the phases -----------------------------------------------------------------------

    def study(self) -> int:
        spec = study_spec(self.preset, name=self.name, seed=self.seed)
        study_id = self.ensure_study(spec)
        self.wait_final([study_id], what="study")
        detail = self.client.get_study(study_id)
        if not detail["has_rules"]:
            raise NoRulesError(f"study {study_id} ended without rules: {detail['message']}")
        return study_id

    def verification(self, study_id: int) -> dict[str, Any]:
        """The verification trial at ``scale_factor``x, requested once, waited for."""
        try:
            status = self.client.verification(study_id)
        except ApiError as exc:
            if exc.status != 404 or "no verification trial" not in str(exc.detail):
                raise
            self.client.verify(study_id, scale_factor=self.preset.scale_factor)
            log(f"verification trial requested at {self.preset.scale_factor:g}x")
            status = self.client.verification(study_id)
        while self.wait and status["state"] not in ("COMPLETE", "FAILED"):
            time.sleep(5.0)
            status = self.client.verification(study_id)
        return status

    def at_scale(self, study_id: int, predicted: dict[str, Any]) -> dict[str, int]:
        """The sweep (the rules' configuration, x1, among it) and the baselines, each
        ``repeats`` times, as one-trial studies; their ids by label (``repeat_label``)."""
        # The study's own trials: the verification trial is on the API's front once it
        # finished, and would be the "largest config" CARBS extrapolates from.
        ours = [t for t in self.all_trials(study_id) if t["reason"] != "verification"]
        configs = at_scale_configs(predicted, ours, self.preset.space)
        if "naive" not in configs:
            log("the naive baseline is the rules' configuration (no hyperparameter law): not run")
        runs = {
            repeat_label(label, repeat): (params, repeat)
            for repeat in range(self.repeats)
            for label, params in configs.items()
        }
        if not self.wait:  # report what exists; creating all at once would hit the below
            extra = lr_sweep(predicted, BRACKET_UP + BRACKET_DOWN)
            labels = [repeat_label(label, r) for r in range(self.repeats) for label in extra]
            existing = self.studies()
            return {
                label: existing[self.scaled_name(label)]["id"]
                for label in [*runs, *labels]
                if self.scaled_name(label) in existing
            }
        ids = self.run_scaled(runs)
        # Past the sweep's edge while its best lies there (``bracket_factors``).
        while True:
            factors = bracket_factors(self.sweep_losses(ids), count=self.preset.workers)
            if not factors or all(sweep_label(f) in ids for f in factors):  # none, or no loss
                return ids
            log(f"the sweep's best is at its edge: lr x{', x'.join(f'{f:g}' for f in factors)}")
            more = lr_sweep(predicted, factors)
            ids |= self.run_scaled(
                {
                    repeat_label(label, repeat): (params, repeat)
                    for repeat in range(self.repeats)
                    for label, params in more.items()
                }
            )

    def scaled_name(self, label: str) -> str:
        return f"{self.name}/10x/{label}"

    def run_scaled(self, runs: dict[str, tuple[dict[str, Any], int]]) -> dict[str, int]:
        """Each run (label -> params, trial seed) as a one-trial study; ids by label.

        As many at once as there are workers: a trial left waiting in the broker past
        the heartbeat grace is reclaimed, and the reclaimed last trial of a one-trial
        budget is cancelled rather than run (the service counts it as dispatched)."""
        ids: dict[str, int] = {}
        labels = list(runs)
        for start in range(0, len(labels), self.preset.workers):
            batch = labels[start : start + self.preset.workers]
            for label in batch:
                params, repeat = runs[label]
                spec = fixed_study(
                    self.preset, name=self.scaled_name(label), params=params, seed=repeat
                )
                ids[label] = self.ensure_study(spec)
            self.wait_final([ids[label] for label in batch], what="10x trials")
        return ids

    def sweep_losses(self, ids: dict[str, int]) -> dict[float, float]:
        """The sweep's mean loss over its repeats by learning-rate factor; a run that
        ended without a loss (diverged) counts as infinite, which bounds the sweep."""
        losses: dict[float, list[float]] = {}
        for label, study_id in ids.items():
            factor = sweep_factor(label)
            if factor is None:
                continue
            for trial in self.client.list_trials(study_id, limit=5)["data"]:
                ok = trial["state"] == "COMPLETE" and trial["loss"] is not None
                losses.setdefault(factor, []).append(trial["loss"] if ok else math.inf)
        return {factor: sum(v) / len(v) for factor, v in losses.items() if v}

    def all_trials(self, study_id: int) -> list[dict[str, Any]]:
        out, offset = [], 0
        while True:
            page = self.client.list_trials(study_id, offset=offset, limit=500)
            out += page["data"]
            offset += len(page["data"])
            if offset >= page["count"] or not page["data"]:
                return out


def tenant_token(base: str, admin_token: str) -> str:
    """A token of the benchmark's tenant (created on first use), issued by the admin."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30.0) as admin:
        created = admin.post("/admin/tenants", json={"name": TENANT})
        if created.status_code == 409:  # made by an earlier run
            tenants = admin.get("/admin/tenants").raise_for_status().json()["data"]
            tenant = next(t for t in tenants if t["name"] == TENANT)
        else:
            tenant = created.raise_for_status().json()
        issued = admin.post(f"/admin/tenants/{tenant['id']}/tokens", json={"name": TENANT})
        return issued.raise_for_status().json()["token"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.real_scaling_report import write_report

    preset = PRESETS[args.preset]
    if args.scale_factor is not None:
        preset = dataclasses.replace(preset, scale_factor=args.scale_factor)
    name = args.name or f"real-scaling-{args.preset}"
    out = Path(args.out) / name
    admin_token = args.admin_token or secrets.token_hex(32)
    config = StackConfig(
        database_url=args.database_url,
        broker_url=args.broker_url,
        admin_token=admin_token,
        log_dir=out / "logs",
        prefix=f"{name}-",  # queues and heartbeats of this study's stack alone
        workers=preset.workers,
        device=preset.device,
        queue=preset.queue,
        port=args.port,
    )
    started = time.monotonic()
    with Stack(config) as stack:
        log(f"stack up at {stack.base} (logs in {config.log_dir})")
        client = ScaletuneClient(stack.base, token=tenant_token(stack.base, admin_token))
        bench = Run(client, preset, name, args.seed, repeats=args.repeats, wait=not args.report_now)
        study_id = bench.study()
        log(f"study {study_id} finished")
        if args.until == "study":
            return {"study_id": study_id}
        report = {"client": client, "study_id": study_id, "out": out}
        report["scale_factor"] = preset.scale_factor
        try:
            verification = bench.verification(study_id)
        except ApiError as exc:
            if exc.status not in (404, 409):  # 409: the rules cannot set N and D there
                raise
            log(f"no verification: {exc.detail}")
            summary = write_report(**report, at_scale=None, refused=str(exc.detail))
        else:
            log(f"verification: {(verification.get('report') or {}).get('message')}")
            at_scale = bench.at_scale(study_id, verification["params"])
            summary = write_report(**report, at_scale=at_scale)
        client.close()
    summary["wall_seconds_this_run"] = time.monotonic() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"report in {out}")
    if summary["verification_refused"]:
        raise NoRulesError(f"no 10x check: {summary['verification_refused']}")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--name", help="the study's name (default real-scaling-<preset>)")
    parser.add_argument("--database-url", required=True, help="PostgreSQL URL of the study")
    parser.add_argument("--broker-url", required=True, help="Redis URL (a database of its own)")
    parser.add_argument("--out", default="bench/results/real-scaling", help="report directory")
    parser.add_argument("--port", type=int, default=None, help="API port (default: a free one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scale-factor",
        type=float,
        default=None,
        help="verify at this multiple of the largest compute (default: the preset's, 10)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        default=1,
        help="run each 10x configuration this many times, under trial seeds 0, 1, ... "
        "(one seed's runs share initialisation and data order, so the sweep is paired)",
    )
    parser.add_argument("--admin-token", help="the API's admin token (default: a fresh one)")
    parser.add_argument(
        "--until", choices=("study", "all"), default="all", help="stop after the study"
    )
    parser.add_argument(
        "--report-now",
        action="store_true",
        help="report the verification and the trials at scale that exist, as they stand, "
        "instead of waiting for them or starting more (a rerun without it carries on)",
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through ``with Stack``: the stack stops


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        run(parse_args(argv))
    except (NoRulesError, StaleStudyError) as exc:
        log(f"stopped: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
