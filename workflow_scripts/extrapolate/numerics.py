"""Numeric kernels of one chunk: θ = θ_aligned + α·(θ_aligned − θ_sft) on raw bytes.

Why on raw bytes: numpy has no bf16, so dtypes are decoded into fp32 work buffers (bf16 by an
integer shift), combined, and rounded back once (nearest-even, bit-identical to torch); bf16
pairs go through the fused C kernel in :mod:`workflow_scripts.kernels`, which gives the same bits.
:mod:`workflow_scripts.extrapolate.reference` states the same formula in plain numpy for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workflow_scripts.extrapolate.dtypes import FLOAT_MAX, ITEMSIZE, torch_dtype
from workflow_scripts.extrapolate.plan import OutTensor


@dataclass
class Chunk:
    """Elements [e0, e1) of one output tensor: the unit the pipeline reads, computes and writes."""

    t: OutTensor
    e0: int
    e1: int
    mode: str  # "math" | "copy_stats" (α=0 or added rows: bytes copied, norms computed) | "copy"


@dataclass
class Stats:
    """Per-tensor sums accumulated over its chunks (for the manifest's norms)."""

    dd: float = 0.0  # ||θ_aligned - θ_sft||² over shared elements
    aa: float = 0.0  # ||θ_aligned||²
    n: int = 0


def to_wide(raw, code: str, n: int, dest_f, dest_u) -> None:
    """Decode ``n`` elements of ``code`` from the byte buffer ``raw`` into the float32/64 ``dest_f``.

    bf16 → fp32 is exact and is just the 16 bits moved to the top of a 32-bit word, which numpy
    does with an integer widen + shift (numpy has no bf16 type); fp8 goes through torch.
    """
    import numpy as np

    if code == "BF16":
        np.copyto(dest_u, raw[: 2 * n].view(np.uint16))
        np.left_shift(dest_u, 16, out=dest_u)
    elif code in ("F16", "F32", "F64"):
        np.copyto(
            dest_f, raw[: n * ITEMSIZE[code]].view({"F16": np.float16, "F32": np.float32, "F64": np.float64}[code])
        )
    else:  # fp8
        import torch

        np.copyto(dest_f, torch.from_numpy(raw[:n]).view(torch_dtype(code)).float().numpy())


def from_wide(src_f, src_u, tmp_u, code: str, n: int, out_raw) -> None:
    """Round the float32/64 ``src_f`` to ``code`` (nearest-even, like torch) into ``out_raw``.

    bf16: add 0x7FFF plus the lowest kept bit, keep the top 16 bits — IEEE round-to-nearest-even,
    bit-identical to ``tensor.to(torch.bfloat16)`` for finite values and ±inf. Clobbers ``src``.
    """
    import numpy as np

    if code == "BF16":
        np.right_shift(src_u, 16, out=tmp_u)
        np.bitwise_and(tmp_u, 1, out=tmp_u)
        np.add(tmp_u, 0x7FFF, out=tmp_u)
        np.add(src_u, tmp_u, out=src_u)
        np.right_shift(src_u, 16, out=src_u)
        np.copyto(out_raw[: 2 * n].view(np.uint16), src_u, casting="unsafe")
    elif code in ("F16", "F32", "F64"):
        np.copyto(
            out_raw[: n * ITEMSIZE[code]].view({"F16": np.float16, "F32": np.float32, "F64": np.float64}[code]),
            src_f,
            casting="unsafe",
        )
    else:
        import torch

        q = torch.from_numpy(np.ascontiguousarray(src_f, dtype=np.float32)).to(torch_dtype(code))
        np.copyto(out_raw[:n], q.view(torch.uint8).numpy())


def _nonfinite_error(ch: Chunk, slot) -> ValueError:
    import numpy as np

    t, n = ch.t, ch.e1 - ch.e0
    for role, info, raw in (("aligned", t.a, slot[0]), ("sft", t.s, slot[1])):
        if info is None or (role == "sft" and ch.e0 >= t.shared_elems):
            continue
        u = np.empty(n, np.uint64 if info.dtype == "F64" else np.uint32)
        f = u.view(np.float64 if info.dtype == "F64" else np.float32)
        to_wide(raw, info.dtype, n, f, u)
        if not np.isfinite(f).all():
            return ValueError(f"tensor {t.name!r} contains NaN/Inf in the {role} checkpoint ({info.file})")
    return ValueError(f"tensor {t.name!r}: values too large for float32 arithmetic")


class Slot:
    """One set of pipeline buffers (aligned input, SFT input, output) in anonymous mmaps.

    Plain page-aligned memory with fixed addresses for the C kernel; numpy views are made only
    when the generic path needs them, so a bf16 run never imports numpy (~0.15 s per job).
    """

    def __init__(self, n_a: int, n_s: int, n_o: int) -> None:
        import ctypes
        import mmap

        self.bufs = tuple(mmap.mmap(-1, max(1, n)) for n in (n_a, n_s, n_o))
        self._pins = [ctypes.c_char.from_buffer(b) for b in self.bufs]
        self.addrs = tuple(ctypes.addressof(p) for p in self._pins)

    def arrays(self) -> tuple:
        import numpy as np

        return tuple(np.frombuffer(b, np.uint8) for b in self.bufs)


class Scratch:
    """Per-worker state: the fused kernel and (allocated on first use) fp32 work buffers."""

    def __init__(self, n: int, kernel=None) -> None:
        import ctypes

        self.n = n
        self.kernel = kernel
        self.stats = (ctypes.c_double * 2)()
        self.stats_addr = ctypes.addressof(self.stats)
        self.u: list = []
        self.f: list = []

    def numpy_buffers(self) -> None:
        if not self.u:
            import numpy as np

            self.u = [np.empty(self.n, np.uint32) for _ in range(3)]
            self.f = [u.view(np.float32) for u in self.u]


def _compute_fused(ch: Chunk, slot: Slot, sc: Scratch) -> tuple[int, float, float] | None:
    """bf16 chunk in one pass of the C kernel (same bits as the numpy path below).

    Returns None when the result might overflow bf16: the numpy path then redoes the chunk with
    its full overflow check (this never happens with real weights).
    """
    t, n = ch.t, ch.e1 - ch.e0
    a_addr, s_addr, o_addr = slot.addrs
    sc.stats[0] = sc.stats[1] = 0.0
    write = ch.mode == "math"
    sc.kernel(a_addr, s_addr, o_addr if write else None, n, t.alpha, sc.stats_addr)
    dd, aa = sc.stats[0], sc.stats[1]
    if not (math.isfinite(aa) and math.isfinite(dd)):
        raise _nonfinite_error(ch, slot.arrays())
    if not write:  # α = 0: the aligned bytes, bit for bit
        return 0, dd, aa
    if math.sqrt(aa) + abs(t.alpha) * math.sqrt(dd) >= 0.5 * FLOAT_MAX["BF16"]:
        return None
    return 2, dd, aa


def compute(ch: Chunk, slot: Slot, sc: Scratch) -> tuple[int, float, float]:
    """Compute one chunk: (which slot buffer holds the output bytes, ‖Δ‖², ‖θ_aligned‖²).

    Buffer 0 means the aligned bytes are written unchanged (α = 0, added rows, non-float), so
    α = 0 reproduces the aligned model bit for bit (even −0.0); 2 means the computed result.
    """
    t, n = ch.t, ch.e1 - ch.e0
    if ch.mode == "copy":
        return 0, 0.0, 0.0
    if sc.kernel is not None and t.a.dtype == "BF16" and t.s.dtype == "BF16" and ch.e1 <= t.shared_elems:
        done = _compute_fused(ch, slot, sc)
        if done is not None:
            return done
    import numpy as np

    slot = slot.arrays()
    a_raw, s_raw, o_raw = slot
    sc.numpy_buffers()
    if "F64" in (t.a.dtype, t.s.dtype):  # rare: keep fp64 precision, allocate per chunk
        a_f, d_f, a_u, d_u, tmp_u = np.empty(n, np.float64), np.empty(n, np.float64), None, None, None
    else:
        a_u, d_u, tmp_u = (u[:n] for u in sc.u)
        a_f, d_f = sc.f[0][:n], sc.f[1][:n]
    to_wide(a_raw, t.a.dtype, n, a_f, a_u)
    aa = float(np.dot(a_f, a_f))
    if ch.e0 >= t.shared_elems:  # added vocabulary rows: aligned kept, Δ = 0
        if not math.isfinite(aa):
            raise _nonfinite_error(ch, slot)
        return 0, 0.0, aa
    to_wide(s_raw, t.s.dtype, n, d_f, d_u)
    np.subtract(a_f, d_f, out=d_f)  # Δ = θ_aligned − θ_sft
    dd = float(np.dot(d_f, d_f))
    if not (math.isfinite(aa) and math.isfinite(dd)):
        raise _nonfinite_error(ch, slot)
    if ch.mode == "copy_stats":  # α = 0: the aligned bytes, bit for bit
        return 0, dd, aa
    np.multiply(d_f, t.alpha, out=d_f)
    np.add(a_f, d_f, out=a_f)  # θ = θ_aligned + α·Δ in fp32, then one rounding below
    # max|θ| <= ‖θ_aligned‖ + |α|·‖Δ‖: only when that bound nears the dtype's range can the result
    # be non-finite, so the full check is skipped in the normal case.
    risky = math.sqrt(aa) + abs(t.alpha) * math.sqrt(dd) >= 0.5 * FLOAT_MAX[t.a.dtype]
    if risky and not (np.isfinite(a_f).all() and np.abs(a_f).max() <= FLOAT_MAX[t.a.dtype]):
        raise ValueError(f"tensor {t.name!r}: extrapolated values overflow {t.a.dtype} with α={t.alpha}")
    from_wide(a_f, a_u, tmp_u, t.a.dtype, n, o_raw)
    return 2, dd, aa
