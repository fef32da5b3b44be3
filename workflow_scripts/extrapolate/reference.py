"""ExPO in plain numpy, the oracle of the tests: θ = θ_aligned + α·(θ_aligned − θ_sft).

Whole tensors, fp64 math, one rounding to the aligned dtype at the end. The engine computes in
fp32 (fp64 for fp64 tensors) chunk by chunk; for fp32/bf16/fp16 tensors the two agree to within
one rounding of the output dtype, which is how the tests compare them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def expo(aligned: np.ndarray, sft: np.ndarray, alpha: float) -> np.ndarray:
    """One tensor: ``aligned + alpha * (aligned - sft)`` in fp64, returned as fp64."""
    a = np.asarray(aligned, np.float64)
    return a + float(alpha) * (a - np.asarray(sft, np.float64))


def expo_state(
    aligned: Mapping[str, np.ndarray], sft: Mapping[str, np.ndarray], alpha_of: Callable[[str], float]
) -> dict[str, np.ndarray]:
    """Every tensor of a model; ``alpha_of(name)`` gives each tensor's α (a scheme's decision)."""
    return {name: expo(a, sft[name], alpha_of(name)) for name, a in aligned.items()}


def delta_norm(aligned: np.ndarray, sft: np.ndarray) -> float:
    """‖θ_aligned − θ_sft‖ (Frobenius), what the manifest reports per tensor group."""
    return float(np.linalg.norm(np.asarray(aligned, np.float64) - np.asarray(sft, np.float64)))
