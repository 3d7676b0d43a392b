"""The ``lm`` objective through the runner: a real (tiny) training trial on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from search.errors import InvalidParamsError
from workers.contracts import TrialRequest
from workers.objectives.base import InfrastructureError
from workers.objectives.lm import LMObjective, train_config
from workers.objectives.options import LMOptions
from workers.runner import run_trial_request
from workers.training.cost import non_embedding_params, training_flops_per_token

TINY = {
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 2,
    "seq_len": 64,
    "tokens": 20 * 2048,
    "batch_size": 2048,
    "learning_rate": 3e-3,
    "schedule": "wsd",
}


@pytest.fixture(autouse=True)
def cpu_data(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("SCALETUNE_DATA_DIR", str(tmp_path_factory.getbasetemp() / "lm-data"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/workers/test_training.py::one_thread
    yield
    torch.set_num_threads(threads)


def _request(params: dict, **options) -> TrialRequest:
    return TrialRequest(
        study_id=1,
        trial_id=1,
        objective="lm",
        params=params,
        seed=3,
        objective_options={"eval_tokens": 4096, "eval_points": 2, **options},
    )


def test_an_lm_trial_reports_loss_cost_and_scaling_metrics() -> None:
    result = run_trial_request(_request(TINY))
    assert result.status == "completed", result.failure_reason
    config = train_config(TINY, seed=3, vocab_size=256)
    assert result.metrics["n_params"] == non_embedding_params(config.model)
    assert result.metrics["tokens"] == 20 * 2048
    assert result.flops == training_flops_per_token(config.model) * 20 * 2048
    assert result.metrics["mfu"] is None  # no peak for a CPU
    assert set(result.metrics) == LMOptions.metrics  # what scaling axes may name
    assert result.cost_seconds >= result.metrics["train_seconds"] > 0
    assert [p["step"] for p in result.curve] == [0, 10, 20]
    assert result.loss == result.curve[-1]["loss"] < math.log(256) - 1.0
    parts = [result.metrics[f"{k}_seconds"] for k in ("data", "setup", "step", "eval")]
    assert all(part >= 0 for part in parts) and result.metrics["step_seconds"] > 0
    assert sum(parts) <= result.metrics["wall_seconds"] <= result.cost_seconds


def test_cost_in_tflop_is_the_training_flops() -> None:
    result = run_trial_request(_request(TINY, cost_unit="tflop", eval_at_start=False))
    assert result.status == "completed", result.failure_reason
    assert [p["step"] for p in result.curve] == [10, 20]  # no evaluation of step 0
    assert result.cost_seconds == pytest.approx(result.flops / 1e12)
    assert result.metrics["wall_seconds"] > 0


def test_an_unknown_cost_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="cost_unit"):
        LMObjective(cost_unit="joules")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dropout": 0.1}, "unknown parameters ['dropout']"),
        ({"d_model": 64, "n_heads": 3}, "d_model (64) must be a multiple of n_heads (3)"),
        ({"schedule": "linear"}, "schedule must be 'cosine' or 'wsd'"),
    ],
)
def test_impossible_configurations_fail_as_config_failures(params: dict, message: str) -> None:
    result = run_trial_request(_request({**TINY, **params}))
    assert (result.status, result.failure_kind) == ("failed", "config")
    assert message in result.failure_reason


def test_a_missing_data_source_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match=r"data unavailable.*does not exist"):
        run_trial_request(_request(TINY, data=str(tmp_path / "absent")))


def test_the_default_space_center_is_a_valid_configuration() -> None:
    space = LMObjective().default_space()
    config = train_config(space.center(), seed=0, vocab_size=256)
    assert config.model.d_model == 128 and config.schedule == "cosine"
    with pytest.raises(InvalidParamsError):
        train_config({"n_layers": 0}, seed=0, vocab_size=256)
