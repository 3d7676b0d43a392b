"""Training data that works offline: token streams in cached memmaps, and batches of them.

The default corpus is the source of the Python standard library (``*.py`` under
``sysconfig.get_paths()["stdlib"]``, site-packages left out), read as bytes: every
machine with Python has it, and a byte is a token (vocabulary 256). It is prepared once
into ``<cache>/bytes-<digest>/{train,val}.bin`` (uint8 memmaps) plus ``meta.json``; the
cache directory is ``$SCALETUNE_DATA_DIR``, default ``~/.cache/scaletune``. Files are
sorted by relative path and every 20th goes to validation, so the split is deterministic
and held out by whole files. The corpus differs between Python versions (losses are
comparable within one machine image, not across).

Users can point ``source`` at a text file or a directory of text files (same byte-level
treatment), or at a pre-tokenised file: ``.npy`` (1-D integer array) or raw ``uint16``
(``.bin``), whose last 5% is held out for validation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VAL_EVERY_NTH_FILE = 20
VAL_FRACTION = 0.05  # of a single file or a token file
_SKIPPED_DIRS = {"site-packages", "dist-packages", "__pycache__"}


class DataError(RuntimeError):
    """The data source is missing or unusable (an infrastructure problem, not the config's)."""


@dataclass(frozen=True)
class TokenData:
    """Train and validation token streams (1-D arrays, usually memmaps) and their vocabulary."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    source: str


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCALETUNE_DATA_DIR") or Path.home() / ".cache" / "scaletune")


def stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files, sorted by path relative to the stdlib root."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]  # prune the walk
        files.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def load_data(source: str | Path | None = None, *, cache_dir: Path | None = None) -> TokenData:
    """Tokens of ``source`` (None or "stdlib": the default corpus), prepared on first use."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if source is None or str(source) == "stdlib":
        return _stdlib_data(cache_dir)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source {str(path)!r} does not exist")
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*") if p.is_file()),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        return _cached_bytes(files, cache_dir=cache_dir, name=str(path))
    if path.suffix in (".npy", ".bin"):
        return _token_file(path)
    return _cached_bytes([path], cache_dir=cache_dir, name=str(path))


@functools.lru_cache(maxsize=4)
def _stdlib_data(cache_dir: Path) -> TokenData:
    """The default corpus, found once per process and cache directory: the standard
    library does not change under a running interpreter, and walking and stat-ing its
    ~1,800 files took 0.2 s of every trial (most of a short CPU trial's overhead)."""
    return _cached_bytes(stdlib_files(), cache_dir=cache_dir, name="stdlib")


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        stat = f.stat()
        h.update(f"{f}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cached_bytes(files: list[Path], *, cache_dir: Path, name: str) -> TokenData:
    if not files:
        raise DataError(f"data source {name!r} has no files")
    target = cache_dir / f"bytes-{_digest(files)}"
    if not (target / "meta.json").exists():
        _prepare_bytes(files, target=target, name=name)
    meta = json.loads((target / "meta.json").read_text())
    return TokenData(
        train=np.memmap(target / "train.bin", dtype=np.uint8, mode="r"),
        val=np.memmap(target / "val.bin", dtype=np.uint8, mode="r"),
        vocab_size=256,
        source=meta["source"],
    )


def _split_bytes(files: list[Path]) -> tuple[bytes, bytes]:
    if len(files) == 1:
        data = files[0].read_bytes()
        cut = int(len(data) * (1 - VAL_FRACTION))
        return data[:cut], data[cut:]
    train: list[bytes] = []
    val: list[bytes] = []
    for i, f in enumerate(files):
        (val if i % VAL_EVERY_NTH_FILE == 0 else train).append(f.read_bytes())
    return b"\n".join(train), b"\n".join(val)


def _prepare_bytes(files: list[Path], *, target: Path, name: str) -> None:
    """Write the split into a temporary directory, then rename it into place.

    Several workers may prepare the same corpus at once; the rename is atomic and the
    loser's copy is discarded.
    """
    train, val = _split_bytes(files)
    if len(val) < 2 or len(train) < 2:
        raise DataError(f"data source {name!r} is too small to split into train/validation")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    (tmp / "train.bin").write_bytes(train)
    (tmp / "val.bin").write_bytes(val)
    meta = {
        "source": name,
        "files": len(files),
        "train_tokens": len(train),
        "val_tokens": len(val),
        "vocab_size": 256,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.rename(tmp, target)
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)


def _token_file(path: Path) -> TokenData:
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r")
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise DataError(
                f"{path}: expected a 1-D integer array, got {tokens.dtype}{tokens.shape}"
            )
    else:
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
    cut = int(len(tokens) * (1 - VAL_FRACTION))
    if cut < 2 or len(tokens) - cut < 2:
        raise DataError(f"{path}: too few tokens ({len(tokens)}) to split")
    return TokenData(
        train=tokens[:cut], val=tokens[cut:], vocab_size=int(tokens.max()) + 1, source=str(path)
    )


def sample_batch(
    tokens: np.ndarray, *, n_sequences: int, seq_len: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs and next-token targets, each (n_sequences, seq_len) int64."""
    if len(tokens) <= seq_len + 1:
        raise DataError(f"{len(tokens)} tokens cannot fill a sequence of {seq_len}")
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=n_sequences)
    return _windows(tokens, starts, seq_len)


def eval_batches(
    tokens: np.ndarray, *, n_tokens: int, seq_len: int, batch_sequences: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, evenly spaced validation windows covering about ``n_tokens`` tokens."""
    n_windows = max(1, n_tokens // seq_len)
    last_start = len(tokens) - seq_len - 1
    if last_start < 0:
        raise DataError(f"{len(tokens)} validation tokens cannot fill a sequence of {seq_len}")
    starts = np.linspace(0, last_start, num=n_windows).astype(np.int64)
    return [
        _windows(tokens, starts[i : i + batch_sequences], seq_len)
        for i in range(0, n_windows, batch_sequences)
    ]


def _windows(
    tokens: np.ndarray, starts: np.ndarray, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]  # (n, seq_len + 1)
    window = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64))
    return window[:, :-1], window[:, 1:]
