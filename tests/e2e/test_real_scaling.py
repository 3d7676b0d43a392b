"""bench/real_scaling.py's pieces on the real stack: its own processes start and stop, and
a hand-picked trial runs through the API and the Celery workers, found again by name."""

from __future__ import annotations

import secrets
import warnings

import httpx
import pytest

from bench.real_scaling import Run, StaleStudyError, tenant_token
from bench.real_scaling_plan import PRESETS, fixed_study, overheads
from bench.real_scaling_stack import Stack, StackConfig
from service.api.app import create_app
from service.config import Settings
from service.interop.client import ScaletuneClient
from tests.auth import ADMIN_TOKEN, authorize

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {
    "d_model": 32,
    "n_layers": 1,
    "tokens": 8192,
    "batch_size": 1024,
    "learning_rate": 0.0031,
    "warmup_fraction": 0.05,
    "weight_decay": 0.1,
}


def test_a_fixed_configuration_runs_on_the_workers_and_is_found_again_by_name(cluster):
    settings = Settings(
        database_url=cluster.database_url,
        broker_url=cluster.broker_url,
        queue_prefix=cluster.prefix,
        heartbeat_prefix=f"{cluster.prefix}hb",
        admin_token=ADMIN_TOKEN,
    )
    preset = PRESETS["smoke"]
    with TestClient(create_app(settings)) as http:
        authorize(http)
        run = Run(ScaletuneClient(http=http), preset, "smoke", seed=0)
        spec = fixed_study(preset, name="smoke/10x/lr-x2", params=TINY)
        study_id = run.ensure_study(spec)
        assert run.ensure_study(spec) == study_id  # a rerun resumes, never duplicates
        # A rerun whose code now picks another configuration under that name is refused
        # (its stored result is not the new configuration's), and creates nothing.
        changed = fixed_study(preset, name="smoke/10x/lr-x2", params={**TINY, "tokens": 4096})
        with pytest.raises(StaleStudyError, match="exists with the configuration"):
            run.ensure_study(changed)
        assert list(run.studies()) == ["smoke/10x/lr-x2"]
        # Its repeat under another trial seed: the same configuration, trained anew.
        again = fixed_study(preset, name="smoke/10x/lr-x2/seed1", params=TINY, seed=1)
        again_id = run.ensure_study(again)
        run.wait_final([study_id, again_id], what="the fixed studies", poll_s=0.5)
        (trial,) = run.all_trials(study_id)
        detail = run.client.get_trial(trial["id"])
        (repeat,) = [run.client.get_trial(t["id"]) for t in run.all_trials(again_id)]
        # What decides whether the sweep goes on past its edge: the mean over the repeats.
        losses = run.sweep_losses({"lr-x2": study_id, "lr-x2/seed1": again_id})
    assert detail["state"] == "COMPLETE", detail["failure_reason"]
    assert repeat["state"] == "COMPLETE" and repeat["params"] == TINY
    assert repeat["loss"] != detail["loss"]  # another initialisation and data order
    assert losses == {2.0: pytest.approx((repeat["loss"] + detail["loss"]) / 2)}
    assert detail["params"] == TINY
    assert detail["cost_seconds"] == pytest.approx(detail["flops"] / 1e12)  # cost_unit tflop
    parts = overheads(detail)
    assert parts is not None and 0.0 < parts["train"] < parts["wall"]
    assert 0.0 < parts["share"] < 1.0


def test_the_benchmarks_stack_starts_serves_and_stops(redis_url, pg_database_url, tmp_path):
    admin = secrets.token_hex(32)
    config = StackConfig(
        database_url=pg_database_url,
        broker_url=redis_url,
        admin_token=admin,
        log_dir=tmp_path,
        prefix=f"rs{secrets.token_hex(4)}-",
        workers=1,
    )
    with Stack(config) as stack:
        token = tenant_token(stack.base, admin)
        assert tenant_token(stack.base, admin) != token  # the tenant exists; a new token
        listing = httpx.get(f"{stack.base}/studies", headers={"Authorization": f"Bearer {token}"})
        assert listing.status_code == 200 and listing.json()["count"] == 0
        processes = list(stack.processes)
        assert len(processes) == 3 and stack.alive()  # API, control, one worker
    assert all(p.poll() is not None for p in processes)
    assert not stack.processes
