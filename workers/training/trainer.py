"""Train a ``DecoderLM`` for a token budget and report validation loss and cost.

``train(config, data, device=...)`` is the whole loop; the pieces it is built from
(``build_model``, ``make_optimizer``, ``lr_at``, ``train_step``, ``evaluate``) are public
so the throughput benchmark times exactly the code a trial runs.

On CUDA: bf16 autocast, fused AdamW, TF32 for the remaining fp32 matmuls, optional
``torch.compile``. On CPU: plain fp32. Divergence (a non-finite loss, or a training loss
that climbs well above its starting value after warmup) ends the run early as a failure.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import nn

from workers.training.cost import model_flops_utilisation, training_flops_per_token
from workers.training.data import TokenData, eval_batches, sample_batch
from workers.training.model import DecoderLM, ModelConfig

# After warmup, a smoothed training loss this many nats above the initial loss is divergence.
DIVERGENCE_MARGIN_NATS = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``tokens`` and ``batch_tokens`` are counted in tokens."""

    model: ModelConfig
    tokens: int
    batch_tokens: int
    learning_rate: float
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    schedule: str = "cosine"  # or "wsd": warmup, stable, then linear decay
    decay_fraction: float = 0.2  # wsd: the final fraction of steps that decays to zero
    min_lr_ratio: float = 0.1  # cosine: the floor, as a fraction of learning_rate
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    micro_batch_tokens: int | None = None  # gradient accumulation above this
    eval_tokens: int = 32768  # validation tokens per evaluation
    eval_points: int = 5  # evaluations after step 0; the last one is the loss
    eval_at_start: bool = True  # also evaluate the untrained model (the curve's first point)
    check_every: int = 10  # steps between loss syncs (divergence checks) on the host
    compile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"schedule must be 'cosine' or 'wsd', not {self.schedule!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.learning_rate <= 0 or self.tokens <= 0 or self.batch_tokens <= 0:
            raise ValueError("learning_rate, tokens and batch_tokens must be positive")

    @property
    def batch_sequences(self) -> int:
        return max(1, round(self.batch_tokens / self.model.seq_len))

    @property
    def micro_sequences(self) -> int:
        limit = self.micro_batch_tokens or self.batch_tokens
        return max(1, min(self.batch_sequences, limit // self.model.seq_len))

    @property
    def accumulation_steps(self) -> int:
        return math.ceil(self.batch_sequences / self.micro_sequences)

    @property
    def total_steps(self) -> int:
        return max(1, round(self.tokens / (self.batch_sequences * self.model.seq_len)))


@dataclass
class TrainReport:
    """What a run produced. ``val_loss`` is None when it failed; costs are kept regardless."""

    val_loss: float | None
    failed: bool
    failure_reason: str | None
    stopped: bool
    steps: int
    tokens: int
    n_params: int
    n_params_total: int
    flops_per_token: int
    wall_seconds: float
    tokens_per_second: float
    mfu: float | None
    device_name: str
    curve: list[dict[str, float]] = field(default_factory=list)
    # Where ``wall_seconds`` went: optimizer steps (first-step compilation included),
    # evaluations; the rest is setup (model, optimizer, validation batches).
    step_seconds: float = 0.0
    eval_seconds: float = 0.0

    @property
    def flops(self) -> float:
        return float(self.flops_per_token * self.tokens)


def lr_at(step: int, *, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``config.total_steps``."""
    total = config.total_steps
    warmup = round(config.warmup_fraction * total)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    if config.schedule == "wsd":
        decay = max(1, round(config.decay_fraction * total))
        remaining = total - step
        return config.learning_rate * min(1.0, remaining / decay)
    progress = (step - warmup) / max(1, total - warmup)
    floor = config.min_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_model(config: TrainConfig, *, device: torch.device) -> DecoderLM:
    torch.manual_seed(config.seed)
    return DecoderLM(config.model).to(device)


def make_optimizer(
    model: nn.Module, config: TrainConfig, *, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices (and the embedding) only, not on norm weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=config.learning_rate, betas=config.betas, fused=device.type == "cuda"
    )


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host batch to ``device`` without stalling the host: an asynchronous copy from
    pageable memory may synchronise with the stream (CUDA runtime docs, "API
    synchronization behavior"), so it goes through pinned memory, as nanoGPT does."""
    if device.type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list,
    *,
    lr: float,
    grad_clip: float,
    device: torch.device,
) -> torch.Tensor:
    """One optimizer step over ``batches`` (gradient accumulation); returns the mean loss
    as a device tensor, so the caller decides when to synchronise."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    total = torch.zeros((), device=device)
    for x, y in batches:
        with autocast(device):
            _, loss = model(to_device(x, device), to_device(y, device))
        (loss / len(batches)).backward()
        total += loss.detach() / len(batches)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


@torch.no_grad()
def evaluate(model: nn.Module, batches: list, *, device: torch.device) -> float:
    """Mean validation cross-entropy (nats per token) over fixed ``batches``."""
    model.eval()
    losses = []
    for x, y in batches:
        with autocast(device):
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.float() * x.numel())
    model.train()
    return float(torch.stack(losses).sum()) / sum(x.numel() for x, _ in batches)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def configure_device(device: torch.device) -> None:
    if device.type == "cuda":
        # A bare "cuda" has no index; set_device refuses it on some torch releases.
        torch.cuda.set_device(device.index if device.index is not None else 0)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Throughput:
    """Training tokens/s from host-synchronised marks, leaving out evaluation time and the
    first segment (compilation, allocator and kernel warm-up)."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.segments: list[tuple[int, float]] = []  # (steps, seconds)
        self._t = time.perf_counter()
        self._step = 0

    def mark(self, step: int) -> None:
        now = time.perf_counter()
        self.segments.append((step - self._step, now - self._t))
        self._t, self._step = now, step

    def restart(self) -> None:
        self._t = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Time in optimizer steps so far, all segments included."""
        return sum(t for _, t in self.segments)

    def tokens_per_second(self) -> float:
        segments = self.segments[1:] or self.segments
        steps, seconds = sum(s for s, _ in segments), sum(t for _, t in segments)
        return steps * self.tokens_per_step / seconds if seconds > 0 else 0.0


class _DivergenceWatch:
    """Flags a non-finite loss at once, and a smoothed loss far above the initial one
    once warmup is over (a learning rate that blew the run up)."""

    def __init__(self, *, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.initial: float | None = None
        self.smoothed: float | None = None

    def check(self, losses: list[float], *, first_step: int) -> str | None:
        for offset, loss in enumerate(losses):
            step = first_step + offset
            if not math.isfinite(loss):
                return f"non-finite training loss ({loss}) at step {step}"
            self.initial = loss if self.initial is None else self.initial
            self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
            if step >= self.warmup_steps and self.smoothed > self.initial + DIVERGENCE_MARGIN_NATS:
                return (
                    f"diverged: smoothed training loss {self.smoothed:.3f} at step {step} "
                    f"exceeds the initial {self.initial:.3f} by over "
                    f"{DIVERGENCE_MARGIN_NATS} nats"
                )
        return None


def eval_steps(config: TrainConfig) -> list[int]:
    """Steps after which validation loss is measured: 0 (untrained, unless
    ``eval_at_start`` is off) up to the last step."""
    total, points = config.total_steps, max(1, config.eval_points)
    start = {0} if config.eval_at_start else set()
    return sorted(start | {max(1, round(total * i / points)) for i in range(1, points + 1)})


def train(
    config: TrainConfig,
    data: TokenData,
    *,
    device: str = "cpu",
    should_stop: Callable[[], bool] | None = None,
    on_eval: Callable[[dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train for ``config.tokens`` tokens; evaluate at ``eval_steps``; stop early on
    divergence (failed) or when ``should_stop()`` turns true (stopped)."""
    started = time.perf_counter()
    dev = torch.device(device)
    configure_device(dev)
    model = build_model(config, device=dev)
    # torch.compile of a module returns a module (typed as any callable)
    compiled = cast(nn.Module, torch.compile(model)) if config.compile else model
    optimizer = make_optimizer(model, config, device=dev)
    rng = np.random.default_rng(config.seed)
    seq_len = config.model.seq_len
    val_batches = eval_batches(
        data.val,
        n_tokens=config.eval_tokens,
        seq_len=seq_len,
        batch_sequences=config.micro_sequences,
    )
    tokens_per_step = config.batch_sequences * seq_len
    evals, curve = set(eval_steps(config)), []
    throughput = _Throughput(tokens_per_step)
    watch = _DivergenceWatch(warmup_steps=round(config.warmup_fraction * config.total_steps))
    pending: list[torch.Tensor] = []
    failure, stopped, last_train_loss, step = None, False, math.nan, 0
    eval_seconds = 0.0

    def record(step_done: int) -> None:
        nonlocal eval_seconds
        eval_started = time.perf_counter()
        point = {
            "step": float(step_done),
            "tokens": float(step_done * tokens_per_step),
            "loss": evaluate(compiled, val_batches, device=dev),
            "lr": lr_at(max(0, step_done - 1), config=config),
        }
        if math.isfinite(last_train_loss):  # none yet before the first step
            point["train_loss"] = last_train_loss
        curve.append(point)
        if on_eval is not None:
            on_eval(point)
        eval_seconds += time.perf_counter() - eval_started
        throughput.restart()

    if 0 in evals:
        record(0)
    while step < config.total_steps:
        if should_stop is not None and should_stop():
            stopped = True
            break
        batches = [
            sample_batch(data.train, n_sequences=config.micro_sequences, seq_len=seq_len, rng=rng)
            for _ in range(config.accumulation_steps)
        ]
        pending.append(
            train_step(
                compiled,
                optimizer,
                batches,
                lr=lr_at(step, config=config),
                grad_clip=config.grad_clip,
                device=dev,
            )
        )
        step += 1
        if step % config.check_every == 0 or step in evals:
            losses = torch.stack(pending).tolist()  # the host sync
            throughput.mark(step)
            failure = watch.check(losses, first_step=step - len(losses))
            last_train_loss, pending = losses[-1], []
            if failure is not None:
                break
            if step in evals:
                record(step)

    done = failure is None and not stopped
    tokens_per_second = throughput.tokens_per_second()
    flops_per_token = training_flops_per_token(config.model)
    name = device_name(dev)
    return TrainReport(
        val_loss=curve[-1]["loss"] if done else None,
        failed=failure is not None,
        failure_reason=failure,
        stopped=stopped,
        steps=step,
        tokens=step * tokens_per_step,
        n_params=model.num_params(non_embedding=True),
        n_params_total=model.num_params(non_embedding=False),
        flops_per_token=flops_per_token,
        wall_seconds=time.perf_counter() - started,
        tokens_per_second=tokens_per_second,
        mfu=model_flops_utilisation(
            flops_per_token=flops_per_token, tokens_per_second=tokens_per_second, device_name=name
        )
        if dev.type == "cuda"
        else None,
        device_name=name,
        curve=curve,
        step_seconds=throughput.seconds,
        eval_seconds=eval_seconds,
    )


def warm_up(*, device: str = "cpu") -> float:
    """Train a tiny model for a few steps on random tokens (evaluation included), so that
    this process's first real run does not pay torch's one-time start-up: lazy imports,
    thread pools, the first kernels. Returns the seconds it took."""
    started = time.perf_counter()
    tokens = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8)
    data = TokenData(train=tokens, val=tokens, vocab_size=256, source="warm-up")
    model = ModelConfig(vocab_size=256, seq_len=32, d_model=32, n_layers=1, n_heads=1)
    config = TrainConfig(
        model=model, tokens=3 * 256, batch_tokens=256, learning_rate=1e-3, eval_tokens=256
    )
    train(config, data, device=device)
    return time.perf_counter() - started
