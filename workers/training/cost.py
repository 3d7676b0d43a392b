"""The single definition of a trial's cost: parameters, tokens, FLOPs, utilisation.

Training FLOPs per token (Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
Table 1; the attention term as in PaLM, Chowdhery et al. 2022, Appendix B):

    6 * N                          matmuls with the non-embedding weights (2 forward, 4 backward)
  + 6 * d_model * vocab_size       the output projection (tied to the embedding, so not in N)
  + 12 * n_layers * seq_len * d_model
                                   attention scores Q K^T and the weighted sum A V over the full
                                   T x T matrix (forward 4 T C per layer, backward twice that);
                                   the causal mask's zeros are counted, as PaLM does

with N the non-embedding parameter count (norm weights included; they are O(d_model)).
A trial of D tokens costs D times that. Evaluation passes are not counted.
"""

from __future__ import annotations

from workers.training.model import ModelConfig

# Dense bf16 tensor-core peaks (TFLOP/s) from vendor datasheets; the first match of a
# substring of torch.cuda.get_device_name() wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5
    ("H200", 989.4),  # same tensor cores as H100 SXM
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.2),
)


def non_embedding_params(config: ModelConfig) -> int:
    """N: every parameter except token/position embeddings (and the tied output head)."""
    d = config.d_model
    attention = 4 * d * d  # qkv (3 d^2) + output projection (d^2)
    mlp = 2 * config.mlp_ratio * d * d
    norms = 2 * d
    return config.n_layers * (attention + mlp + norms) + d  # + final norm


def training_flops_per_token(config: ModelConfig) -> int:
    """Forward + backward FLOPs per trained token (formula in the module docstring)."""
    n = non_embedding_params(config)
    head = 6 * config.d_model * config.vocab_size
    attention = 12 * config.n_layers * config.seq_len * config.d_model
    return 6 * n + head + attention


def training_flops(config: ModelConfig, *, tokens: int) -> int:
    """FLOPs of training on ``tokens`` tokens."""
    return training_flops_per_token(config) * tokens


def peak_flops_per_second(device_name: str) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None when it is not in the table."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def model_flops_utilisation(
    *, flops_per_token: float, tokens_per_second: float, device_name: str
) -> float | None:
    """MFU (PaLM's definition): achieved model FLOP/s over the device's peak."""
    peak = peak_flops_per_second(device_name)
    return None if peak is None else flops_per_token * tokens_per_second / peak
