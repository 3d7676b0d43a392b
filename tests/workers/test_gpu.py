"""The ``lm`` trainer on a CUDA device: bf16, fused AdamW, compile, MFU, and OOM as a failure.

Needs only torch, numpy and pytest (no pydantic or Celery), so it runs on a bare GPU image
(``bench/gpu_check.sh``). Skipped where no CUDA device is present.
"""

from __future__ import annotations

import math

import pytest
import torch

from workers.objectives.base import NullContext
from workers.objectives.lm import LMObjective

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SMALL = {
    "d_model": 256,
    "n_layers": 4,
    "n_heads": 4,
    "seq_len": 256,
    "tokens": 60 * 16384,
    "batch_size": 16384,
    "learning_rate": 3e-3,
}


def test_a_compiled_bf16_trial_trains_and_reports_mfu(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SCALETUNE_DATA_DIR", str(tmp_path))
    objective = LMObjective(compile=True, eval_tokens=16384, eval_points=3)
    outcome = objective.run(SMALL, seed=0, context=NullContext(device="cuda:0"))
    assert not outcome.failed, outcome.failure_reason
    assert outcome.loss < outcome.curve[0]["loss"] - 1.0
    assert math.isfinite(outcome.loss)
    assert 0 < outcome.metrics["mfu"] < 1
    assert outcome.metrics["tokens_per_second"] > 0


def test_out_of_memory_is_a_failed_outcome_and_the_device_stays_usable(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("SCALETUNE_DATA_DIR", str(tmp_path))
    # About 0.3 MB of activations per token (8 layers of width 1024, bf16), so a 2M-token
    # micro-batch needs several hundred GB: more than any single GPU has.
    batch = 2**21
    params = {
        "d_model": 1024,
        "n_layers": 8,
        "n_heads": 8,
        "seq_len": 1024,
        "batch_size": batch,
        "tokens": batch,
        "learning_rate": 1e-3,
    }
    objective = LMObjective(
        compile=False, eval_tokens=1024, eval_points=1, micro_batch_tokens=batch
    )
    outcome = objective.run(params, seed=0, context=NullContext(device="cuda:0"))
    assert outcome.failed and "out of memory" in outcome.failure_reason
    assert outcome.cost_seconds > 0
    small = LMObjective(compile=False, eval_tokens=4096, eval_points=1)
    after = small.run({**SMALL, "tokens": 4 * 16384}, seed=0, context=NullContext(device="cuda:0"))
    assert not after.failed
