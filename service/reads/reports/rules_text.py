"""Scaling rules in words: each law with its exponents and their intervals.

Shared by the terminal's rules table (``service.reads.reports.outcome``) and the Markdown report
(``service.reads.reports.scaling``), so both say the same thing. A law fitted in ``ln`` (log
parameters) or ``log2`` (powers of two) is a power law, shown by its exponents:
``x* ~ C^b`` or ``x* ~ N^p D^q`` (for ``log2``, ``b`` is the slope times ln 2). A law in
``logit`` or identity space is shown as the line it is, ``logit(x*) = a + b ln C``.
"""

from __future__ import annotations

import math

from search.scaling.laws import LinearLaw
from search.scaling.rules import HyperparameterRule, ScalingRules

# Slope of T(x*) per ln-unit -> exponent of a power law, for the power-law transforms.
_EXPONENT_FACTOR = {"ln": 1.0, "log2": math.log(2.0)}
_FEATURE_SYMBOL = {"ln_compute": "C", "ln_n_params": "N", "ln_tokens": "D"}


def law_text(rule: HyperparameterRule, law: LinearLaw) -> str:
    """``lr* ~ C^-0.12 [-0.20, -0.05]`` or ``logit(x*) = a + 0.03 [..] ln C``."""
    factor = _EXPONENT_FACTOR.get(rule.transform)
    terms = []
    for j, feature in enumerate(law.features, start=1):
        symbol = _FEATURE_SYMBOL.get(feature, feature)
        scale = factor if factor is not None else 1.0
        value, low, high = (scale * v for v in (law.coef[j], law.coef_low[j], law.coef_high[j]))
        interval = f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
        terms.append(f"{symbol}^{interval}" if factor is not None else f"{interval} ln {symbol}")
    if factor is not None:
        return f"{rule.name}* ~ " + " ".join(terms)
    space = "logit" if rule.transform == "logit" else ""
    target = f"{space}({rule.name}*)" if space else f"{rule.name}*"
    return f"{target} = a " + " ".join(terms)


def rule_laws(rule: HyperparameterRule) -> list[str]:
    """Every law a supported continuous rule has (vs compute, vs size and tokens)."""
    return [law_text(rule, law) for law in (rule.vs_compute, rule.vs_size_tokens) if law]


def excludes_zero(law: LinearLaw) -> bool:
    """Whether every slope's interval excludes 0 (a significant trend)."""
    bounds = zip(law.coef_low[1:], law.coef_high[1:], strict=True)
    return all(low > 0 or high < 0 for low, high in bounds)


def allocation_texts(rules: ScalingRules) -> list[tuple[str, str]]:
    """``(N*(C), "N* ~ C^0.50 [0.45, 0.55]")`` etc.; a refused law gives its reason."""
    allocation = rules.allocation
    if allocation is None:
        return []
    out = []
    for name, letter in (("n_params", "N"), ("tokens", "D")):
        law, reason = getattr(allocation, name), getattr(allocation, f"{name}_reason")
        if law is None:
            out.append((f"{letter}*(C)", f"none: {reason}"))
        else:
            exponent = f"{law.coef[1]:+.3f} [{law.coef_low[1]:+.3f}, {law.coef_high[1]:+.3f}]"
            out.append((f"{letter}*(C)", f"{letter}* ~ C^{exponent}"))
    return out
