"""workers.training: model, cost (hand counts), schedules, data, and a real short run."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from workers.training.cost import (
    model_flops_utilisation,
    non_embedding_params,
    peak_flops_per_second,
    training_flops,
    training_flops_per_token,
)
from workers.training.data import DataError, load_data, sample_batch, stdlib_files
from workers.training.model import DecoderLM, ModelConfig
from workers.training.trainer import TrainConfig, eval_steps, lr_at, train, warm_up

SMALL = ModelConfig(vocab_size=256, seq_len=32, d_model=16, n_layers=2, n_heads=2)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared CI machine, spinning OpenMP threads that wait for a
    descheduled sibling made these runs up to 8x slower than a single thread (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_parameter_and_flop_counts_match_a_hand_count() -> None:
    # Per layer: qkv 16*48 + proj 16*16 = 1024; MLP 16*64 + 64*16 = 2048; two norms 2*16.
    n_hand = 2 * (1024 + 2048 + 32) + 16  # + final norm = 6224
    assert non_embedding_params(SMALL) == n_hand
    assert DecoderLM(SMALL).num_params(non_embedding=True) == n_hand
    # 6N + output projection 6 * 16 * 256 + attention 12 * layers 2 * T 32 * d 16
    per_token_hand = 6 * 6224 + 24576 + 12288
    assert training_flops_per_token(SMALL) == per_token_hand == 74208
    assert training_flops(SMALL, tokens=1000) == 74_208_000


def test_the_flop_formula_matches_torchs_flop_counter() -> None:
    # With the math attention kernel every FLOP is a counted matmul; the formula differs
    # only by the norm weights' 6 FLOPs per parameter (elementwise, which torch ignores).
    model = DecoderLM(SMALL)
    x = torch.randint(0, 256, (4, SMALL.seq_len))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    norm_params = 2 * SMALL.n_layers * SMALL.d_model + SMALL.d_model
    tokens = x.numel()
    assert (
        counter.get_total_flops() == training_flops(SMALL, tokens=tokens) - 6 * norm_params * tokens
    )


def test_mfu_uses_the_device_peak_table() -> None:
    assert peak_flops_per_second("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops_per_second("NVIDIA H100 PCIe") == 756e12
    assert peak_flops_per_second("NVIDIA H200") == 989.4e12
    assert peak_flops_per_second("cpu") is None
    mfu = model_flops_utilisation(
        flops_per_token=1e9, tokens_per_second=4.947e5, device_name="NVIDIA H100 80GB HBM3"
    )
    assert mfu == pytest.approx(0.5)


def test_the_model_is_causal() -> None:
    torch.manual_seed(0)
    model = DecoderLM(SMALL).eval()
    x = torch.randint(0, 256, (1, SMALL.seq_len))
    changed = x.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 256
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(changed)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-6)
    assert not torch.allclose(a[:, 20:], b[:, 20:], atol=1e-3)


def test_bad_architectures_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"d_model \(30\) must be a multiple of n_heads \(4\)"):
        ModelConfig(d_model=30, n_heads=4)


def _config(**overrides) -> TrainConfig:
    base = {
        "model": SMALL,
        "tokens": 32 * 100,
        "batch_tokens": 32,
        "learning_rate": 1.0,
        "warmup_fraction": 0.1,
    }
    return TrainConfig(**{**base, **overrides})


def test_cosine_schedule_warms_up_then_decays_to_its_floor() -> None:
    config = _config(schedule="cosine", min_lr_ratio=0.1)
    lrs = [lr_at(s, config=config) for s in range(config.total_steps)]
    assert config.total_steps == 100
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_wsd_schedule_is_stable_then_decays_linearly_to_zero() -> None:
    config = _config(schedule="wsd", decay_fraction=0.2)
    lrs = [lr_at(s, config=config) for s in range(100)]
    assert lrs[10:80] == [1.0] * 70
    assert lrs[90] == pytest.approx(0.5) and lrs[99] == pytest.approx(0.05)


def test_eval_steps_run_from_untrained_to_the_last_step() -> None:
    assert eval_steps(_config(eval_points=4)) == [0, 25, 50, 75, 100]
    assert eval_steps(_config(eval_points=4, eval_at_start=False)) == [25, 50, 75, 100]
    assert eval_steps(_config(eval_points=1, eval_at_start=False)) == [100]


def test_text_directories_split_by_file_deterministically(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"f{i:02d}.txt").write_text(f"file {i:02d} " * 10)
    data = load_data(corpus, cache_dir=tmp_path / "cache")
    assert data.vocab_size == 256
    val_text = bytes(data.val).decode()
    assert "file 00" in val_text and "file 20" in val_text and "file 01" not in val_text
    again = load_data(corpus, cache_dir=tmp_path / "cache")  # from the cache
    assert np.array_equal(np.asarray(again.train), np.asarray(data.train))


def test_token_files_hold_out_their_tail(tmp_path: Path) -> None:
    tokens = np.arange(1000, dtype=np.int64) % 700
    np.save(tmp_path / "tokens.npy", tokens)
    data = load_data(tmp_path / "tokens.npy")
    assert data.vocab_size == 700 and len(data.val) == 50
    assert np.array_equal(np.asarray(data.val), tokens[950:])
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "missing.txt")


def test_batches_pair_each_token_with_the_next() -> None:
    tokens = np.arange(500, dtype=np.uint16)
    x, y = sample_batch(tokens, n_sequences=3, seq_len=8, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (3, 8) and x.dtype == torch.int64
    assert torch.equal(y, x + 1)


def test_the_default_corpus_is_the_standard_library_without_site_packages() -> None:
    files = stdlib_files()
    assert len(files) > 500
    assert not any("site-packages" in f.parts for f in files)
    assert any(f.name == "os.py" for f in files)


def test_the_default_corpus_is_found_once_per_process_and_cache(tmp_path: Path) -> None:
    first = load_data(cache_dir=tmp_path / "a")
    assert load_data("stdlib", cache_dir=tmp_path / "a") is first  # no second walk
    other = load_data(cache_dir=tmp_path / "b")
    assert other is not first and (tmp_path / "b").is_dir()
    assert np.array_equal(other.val, first.val)


@pytest.fixture(scope="session")
def stdlib_data(tmp_path_factory: pytest.TempPathFactory):
    return load_data(cache_dir=tmp_path_factory.mktemp("data"))


def test_validation_loss_falls_in_a_short_cpu_run_on_the_real_corpus(stdlib_data) -> None:
    model = ModelConfig(seq_len=64, d_model=64, n_layers=2, n_heads=2)
    config = TrainConfig(
        model=model,
        tokens=30 * 2048,
        batch_tokens=2048,
        learning_rate=3e-3,
        eval_tokens=8192,
        eval_points=3,
        seed=1,
    )
    report = train(config, stdlib_data)
    first, last = report.curve[0]["loss"], report.curve[-1]["loss"]
    assert first == pytest.approx(math.log(256), abs=0.3)  # untrained: about uniform
    assert last < first - 1.0
    assert report.val_loss == last and not report.failed
    assert report.tokens == 30 * 2048 and report.steps == 30
    assert report.wall_seconds > 0 and report.tokens_per_second > 0 and report.mfu is None


def test_a_learning_rate_that_blows_up_is_detected_early(stdlib_data) -> None:
    model = ModelConfig(seq_len=64, d_model=64, n_layers=2, n_heads=2)
    config = TrainConfig(
        model=model,
        tokens=200 * 2048,
        batch_tokens=2048,
        learning_rate=30.0,
        warmup_fraction=0.0,
        grad_clip=0.0,
        eval_tokens=4096,
        eval_points=2,
    )
    report = train(config, stdlib_data)
    assert report.failed and report.val_loss is None
    assert "diverged" in report.failure_reason or "non-finite" in report.failure_reason
    assert report.steps < 200  # stopped early


def test_should_stop_ends_the_run(stdlib_data) -> None:
    calls = []
    report = train(
        _config(tokens=32 * 1000, eval_tokens=64),
        stdlib_data,
        should_stop=lambda: calls.append(1) or len(calls) > 3,
    )
    assert report.stopped and report.steps == 3 and report.val_loss is None


def test_warm_up_trains_a_tiny_model_on_the_cpu() -> None:
    assert warm_up(device="cpu") > 0
