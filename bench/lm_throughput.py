"""Throughput and MFU of the ``lm`` trainer, and the wall time of a full CPU trial.

Times exactly the code a trial runs (``workers.training.trainer``'s model, optimizer and
``train_step``) and needs only torch, numpy and the standard library, so it runs on a
bare GPU image::

    PYTHONPATH=. python3 bench/lm_throughput.py --preset gpt2-small --json out.json
    PYTHONPATH=. python3 bench/lm_throughput.py --preset cpu-1m --full-run   # 1M params x 1M tokens

Presets: ``gpt2-small`` is GPT-2 small's shape (12 layers, d_model 768, 12 heads, seq 1024,
vocabulary 50304: 124M parameters, 85M non-embedding) on random tokens; ``gpt2-small-bytes``
the same transformer with the byte vocabulary (256) the default corpus uses, on that corpus;
``gpt-25m`` a smaller one (8 layers, d_model 512). MFU = training FLOPs per token
(``workers.training.cost``) x tokens/s / the device's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from workers.training.cost import (
    model_flops_utilisation,
    non_embedding_params,
    training_flops_per_token,
)
from workers.training.data import TokenData, load_data, sample_batch
from workers.training.model import ModelConfig
from workers.training.trainer import (
    TrainConfig,
    build_model,
    configure_device,
    device_name,
    make_optimizer,
    synchronize,
    train,
    train_step,
)

PRESETS: dict[str, ModelConfig] = {
    "gpt2-small": ModelConfig(vocab_size=50304, seq_len=1024, d_model=768, n_layers=12, n_heads=12),
    "gpt2-small-bytes": ModelConfig(
        vocab_size=256, seq_len=1024, d_model=768, n_layers=12, n_heads=12
    ),
    "gpt-25m": ModelConfig(vocab_size=256, seq_len=1024, d_model=512, n_layers=8, n_heads=8),
    "cpu-1m": ModelConfig(vocab_size=256, seq_len=128, d_model=192, n_layers=2, n_heads=6),
}


def bench_data(model: ModelConfig, *, cache_dir: Path) -> TokenData:
    if model.vocab_size == 256:
        return load_data(cache_dir=cache_dir)
    tokens = np.random.default_rng(0).integers(0, model.vocab_size, 4_000_000, dtype=np.uint16)
    return TokenData(
        train=tokens, val=tokens[-100_000:], vocab_size=model.vocab_size, source="random"
    )


def time_steps(
    config: TrainConfig, data: TokenData, *, device: str, warmup_steps: int, steps: int
) -> dict:
    """Tokens/s over ``steps`` optimizer steps after ``warmup_steps`` (compilation)."""
    dev = torch.device(device)
    configure_device(dev)
    model = build_model(config, device=dev)
    compiled = torch.compile(model) if config.compile else model
    optimizer = make_optimizer(model, config, device=dev)
    rng = np.random.default_rng(0)

    def step() -> torch.Tensor:
        batches = [
            sample_batch(
                data.train,
                n_sequences=config.micro_sequences,
                seq_len=config.model.seq_len,
                rng=rng,
            )
            for _ in range(config.accumulation_steps)
        ]
        return train_step(
            compiled, optimizer, batches, lr=1e-4, grad_clip=config.grad_clip, device=dev
        )

    t0 = time.perf_counter()
    for _ in range(warmup_steps):
        loss = step()
    synchronize(dev)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    synchronize(dev)
    seconds = time.perf_counter() - t0
    tokens = steps * config.accumulation_steps * config.micro_sequences * config.model.seq_len
    tokens_per_s = tokens / seconds
    flops_per_token = training_flops_per_token(config.model)
    name = device_name(dev)
    return {
        "device_name": name,
        "warmup_seconds": warmup_s,
        "timed_seconds": seconds,
        "timed_tokens": tokens,
        "tokens_per_second": tokens_per_s,
        "flops_per_token": flops_per_token,
        "achieved_tflops": flops_per_token * tokens_per_s / 1e12,
        "mfu": model_flops_utilisation(
            flops_per_token=flops_per_token, tokens_per_second=tokens_per_s, device_name=name
        ),
        "final_loss": float(loss),
        "max_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30
        if dev.type == "cuda"
        else None,
    }


def full_run(config: TrainConfig, data: TokenData, *, device: str) -> dict:
    """A whole trial (evaluations included), as the ``lm`` objective runs it."""
    cpu_started = time.process_time()
    report = train(config, data, device=device)
    return {
        "wall_seconds": report.wall_seconds,
        # CPU time of all threads: wall time on an idle machine is about this / threads.
        "process_cpu_seconds": time.process_time() - cpu_started,
        "val_loss": report.val_loss,
        "initial_val_loss": report.curve[0]["loss"],
        "tokens": report.tokens,
        "tokens_per_second": report.tokens_per_second,
        "mfu": report.mfu,
        "device_name": report.device_name,
        "failed": report.failed,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpt2-small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--batch-tokens",
        type=int,
        default=None,
        help="tokens per optimizer step (default: 64 sequences, 16384 on CPU)",
    )
    parser.add_argument("--micro-batch-tokens", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile (default: on for CUDA)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    parser.add_argument(
        "--full-run",
        action="store_true",
        help="train a whole trial of --tokens tokens (evals included)",
    )
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="append the result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = PRESETS[args.preset]
    on_cuda = args.device.startswith("cuda")
    batch_tokens = args.batch_tokens or (64 * model.seq_len if on_cuda else 16384)
    config = TrainConfig(
        model=model,
        tokens=args.tokens,
        batch_tokens=batch_tokens,
        learning_rate=3e-3,
        micro_batch_tokens=args.micro_batch_tokens,
        compile=on_cuda if args.compile is None else args.compile,
    )
    cache_dir = args.cache_dir or Path(tempfile.gettempdir()) / "scaletune-bench-data"
    data = bench_data(model, cache_dir=cache_dir)
    if args.full_run:
        measured = full_run(config, data, device=args.device)
    else:
        measured = time_steps(
            config, data, device=args.device, warmup_steps=args.warmup_steps, steps=args.steps
        )
    result = {
        "bench": "lm_throughput",
        "preset": args.preset,
        "mode": "full_run" if args.full_run else "steps",
        "model": asdict(model),
        "n_params_non_embedding": non_embedding_params(model),
        "batch_tokens": config.batch_sequences * model.seq_len,
        "micro_batch_tokens": config.micro_sequences * model.seq_len,
        "compile": config.compile,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        **measured,
    }
    print(json.dumps(result, indent=1), flush=True)
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
