"""The ``lm`` objective: train a decoder-only transformer and report validation loss.

Hyperparameters (``params``; all optional, defaults in ``DEFAULT_PARAMS``):
``d_model``, ``n_layers``, ``n_heads`` or ``head_dim``, ``seq_len``, ``tokens`` (training
tokens D), ``batch_size`` (in tokens), ``learning_rate``, ``warmup_fraction``,
``weight_decay``, ``schedule`` ("cosine" or "wsd").

Options (the study's ``objective_options``, constructor keywords): ``data`` (None: the
standard-library corpus; or a text file, a directory of text files, a ``.npy``/``.bin``
token file on the worker), ``compile`` (default: on for CUDA), ``eval_tokens``,
``eval_points``, ``eval_at_start``, ``micro_batch_tokens`` (default 32768: larger batches
accumulate gradients, so a large batch alone does not run out of memory), ``num_threads``
(CPU), ``norm``, ``cost_unit``; declared, with their defaults, in
``workers.objectives.options.LMOptions``.

Outcome: loss = held-out validation cross-entropy (nats per token); cost = wall seconds
of the whole trial on its device (data preparation, compilation and evaluation included),
or with the option ``cost_unit: tflop`` its training FLOPs / 1e12 (the same on a busy
machine as on an idle one); flops and the metrics ``n_params`` (non-embedding N),
``tokens`` (D), ``tokens_per_second``, ``mfu`` (GPU) from ``workers.training.cost``, and
the wall time split into ``data_seconds``, ``setup_seconds``, ``step_seconds`` and
``eval_seconds`` (``wall_seconds`` in all).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from search.errors import InvalidParamsError
from workers.objectives.base import InfrastructureError, Objective, ObjectiveOutcome, TrialContext
from workers.objectives.options import LMOptions
from workers.training.data import DataError, load_data
from workers.training.model import ModelConfig
from workers.training.trainer import TrainConfig, TrainReport, train

if TYPE_CHECKING:
    from search.space import SearchSpace

# A ~0.9M-parameter model on 1M tokens: about a minute or two on two CPU cores.
DEFAULT_PARAMS: dict[str, Any] = {
    "d_model": 192,
    "n_layers": 2,
    "head_dim": 32,
    "seq_len": 128,
    "tokens": 1_000_000,
    "batch_size": 16384,
    "learning_rate": 3e-3,
    "warmup_fraction": 0.05,
    "weight_decay": 0.1,
    "schedule": "cosine",
}
_KNOWN = LMOptions.parameters or frozenset()


def train_config(
    params: dict[str, Any], *, seed: int, vocab_size: int, **options: Any
) -> TrainConfig:
    """``TrainConfig`` from trial params over ``DEFAULT_PARAMS``; InvalidParamsError if bad."""
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise InvalidParamsError(f"lm: unknown parameters {unknown}; known: {sorted(_KNOWN)}")
    p = {**DEFAULT_PARAMS, **params}
    d_model = int(p["d_model"])
    n_heads = int(p["n_heads"]) if "n_heads" in params else d_model // int(p["head_dim"])
    try:
        model = ModelConfig(
            vocab_size=vocab_size,
            seq_len=int(p["seq_len"]),
            d_model=d_model,
            n_layers=int(p["n_layers"]),
            n_heads=max(1, n_heads),
            norm=options.pop("norm", "layernorm"),
        )
        return TrainConfig(
            model=model,
            tokens=int(p["tokens"]),
            batch_tokens=int(p["batch_size"]),
            learning_rate=float(p["learning_rate"]),
            warmup_fraction=float(p["warmup_fraction"]),
            weight_decay=float(p["weight_decay"]),
            schedule=str(p["schedule"]),
            seed=seed,
            **options,
        )
    except ValueError as exc:
        raise InvalidParamsError(f"lm: {exc}") from exc


class LMObjective(Objective):
    """Real training of a small language model; see the module docstring."""

    name: ClassVar[str] = "lm"

    def __init__(self, **options: Any) -> None:
        """``options``: the fields of ``LMOptions`` (ValidationError for any other)."""
        checked = LMOptions.model_validate(options)
        self.data = checked.data
        self.compile = checked.compile
        self.num_threads = checked.num_threads
        self.cost_unit = checked.cost_unit
        self.train_options = checked.model_dump(
            include={"eval_tokens", "eval_points", "eval_at_start", "micro_batch_tokens", "norm"}
        )

    def default_space(self) -> SearchSpace:
        from search.space import SearchSpace

        return SearchSpace.model_validate(
            {
                "params": [
                    {"kind": "pow2", "name": "d_model", "center": 128, "min": 32, "max": 2048},
                    {"kind": "int", "name": "n_layers", "center": 4, "min": 1, "max": 48},
                    {
                        "kind": "int",
                        "name": "tokens",
                        "center": 1_048_576,
                        "min": 65536,
                        "max": 10**11,
                        "scale": 1.0,
                    },
                    {
                        "kind": "pow2",
                        "name": "batch_size",
                        "center": 16384,
                        "min": 1024,
                        "max": 4_194_304,
                    },
                    {
                        "kind": "log",
                        "name": "learning_rate",
                        "center": 3e-3,
                        "min": 1e-5,
                        "max": 1.0,
                    },
                    {
                        "kind": "logit",
                        "name": "warmup_fraction",
                        "center": 0.05,
                        "min": 0.001,
                        "max": 0.5,
                    },
                    {"kind": "log", "name": "weight_decay", "center": 0.1, "min": 1e-4, "max": 1.0},
                    {"kind": "choice", "name": "schedule", "choices": ["cosine", "wsd"]},
                ]
            }
        )

    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        started = time.perf_counter()
        if self.num_threads and context.device == "cpu":
            torch.set_num_threads(self.num_threads)
        try:
            data = load_data(self.data)
        except (DataError, OSError) as exc:
            raise InfrastructureError(f"lm: data unavailable: {exc}") from exc
        data_seconds = time.perf_counter() - started
        compile_model = context.device.startswith("cuda") if self.compile is None else self.compile
        config = train_config(
            params,
            seed=seed,
            vocab_size=data.vocab_size,
            compile=compile_model,
            **self.train_options,
        )

        def on_eval(point: dict[str, float]) -> None:
            context.report(step=int(point["step"]), loss=point["loss"], tokens=point["tokens"])

        try:
            report = train(
                config,
                data,
                device=context.device,
                should_stop=context.should_stop,
                on_eval=on_eval,
            )
        except torch.cuda.OutOfMemoryError as exc:
            reason = "CUDA out of memory: " + (str(exc).strip().splitlines() or [""])[0][:300]
        else:
            wall_seconds = time.perf_counter() - started
            return _outcome(
                report,
                cost=self._cost(flops=report.flops, wall_seconds=wall_seconds),
                wall_seconds=wall_seconds,
                data_seconds=data_seconds,
            )
        # Only now, with the exception's frames gone, are the run's tensors free to release.
        torch.cuda.empty_cache()
        return ObjectiveOutcome(
            loss=None,
            # The FLOPs done before running out of memory are not known: none counted.
            cost_seconds=self._cost(flops=0.0, wall_seconds=time.perf_counter() - started),
            failed=True,
            failure_reason=reason,
        )

    def _cost(self, *, flops: float, wall_seconds: float) -> float:
        """The trial's cost in the unit of the ``cost_unit`` option."""
        return flops / 1e12 if self.cost_unit == "tflop" else wall_seconds


def _outcome(
    report: TrainReport, *, cost: float, wall_seconds: float, data_seconds: float
) -> ObjectiveOutcome:
    return ObjectiveOutcome(
        loss=report.val_loss,
        cost_seconds=cost,
        flops=report.flops,
        failed=report.failed,
        failure_reason=report.failure_reason,
        curve=report.curve,
        metrics={
            "n_params": report.n_params,
            "n_params_total": report.n_params_total,
            "tokens": report.tokens,
            "steps": report.steps,
            "flops_per_token": report.flops_per_token,
            "tokens_per_second": report.tokens_per_second,
            "mfu": report.mfu,
            "train_seconds": report.wall_seconds,
            "device_name": report.device_name,
            # The trial's wall time in the objective, split: data, setup (model,
            # optimizer, validation batches), optimizer steps (compilation included),
            # evaluations.
            "wall_seconds": wall_seconds,
            "data_seconds": data_seconds,
            "setup_seconds": report.wall_seconds - report.step_seconds - report.eval_seconds,
            "step_seconds": report.step_seconds,
            "eval_seconds": report.eval_seconds,
        },
    )
