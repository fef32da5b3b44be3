"""Optional compiled kernels for the extrapolation hot path, built on first use, numpy otherwise.

Why: numpy has no bfloat16 type, so one bf16 ExPO chunk costs ~15 array passes (widen, Δ, two
norms, α·Δ, the add, five integer passes for round-to-nearest-even) — about 2.5 ns per element
on a 2-core VM, several times the cost of just reading and writing the bytes. One fused C loop
does the same work in ~0.5 ns (benchmarks/README.md). torch or numba would fuse less or cost
seconds of import per job, which matters for the many small extrapolation jobs of a sweep.

How: ``expo_bf16.c`` is compiled with the system C compiler (``$CC``, else ``cc``/``gcc``) into
a per-user cache keyed by the source and compiler, written atomically, loaded with ctypes (which
releases the GIL during the call, so compute threads run in parallel), and checked against the
numpy reference on edge-case values before it is used. Anything that fails — no compiler, a
read-only cache, a mismatch — logs one line and the engine keeps its numpy path, which gives the
same bits. ``EXPO_KERNELS=numpy`` forces the numpy path; ``EXPO_KERNEL_CACHE`` moves the cache.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("expo_bf16.c")
CFLAGS = ["-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]
"""No FMA contraction and no fast-math: the kernel must round exactly like the numpy path."""

_lock = threading.Lock()
_cached: dict[str, object] = {}


def cache_dir() -> Path:
    """Where built kernels live: ``$EXPO_KERNEL_CACHE``, else ``$XDG_CACHE_HOME`` or ~/.cache."""
    if os.environ.get("EXPO_KERNEL_CACHE"):
        return Path(os.environ["EXPO_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "expo-workflow" / "kernels"


def _compiler() -> str | None:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand.split()[0]):
            return cand
    return None


def _build(cc: str) -> Path:
    """Compile the kernel once per (source, compiler, flags); concurrent jobs race harmlessly."""
    version = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(SOURCE.read_bytes() + version.encode() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out = cache_dir() / f"expo_bf16-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".expo_bf16-", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([*cc.split(), *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, out)  # atomic: another job never loads a half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _self_test(fn: Callable) -> None:
    """Compare with the numpy reference on values that exercise rounding ties, signs, subnormals
    and large magnitudes; a miscompiled kernel (e.g. a compiler that contracts to FMA) is refused."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = 4099  # not a multiple of the kernel's lanes or block: the tail loop runs too
    a = rng.integers(0, 2**16, n, dtype=np.uint32).astype(np.uint16)
    s = rng.integers(0, 2**16, n, dtype=np.uint32).astype(np.uint16)
    # keep finite inputs (exponent field not all ones) and add exact ties/subnormals/zeros
    a[(a & 0x7F80) == 0x7F80] &= 0xBFFF
    s[(s & 0x7F80) == 0x7F80] &= 0xBFFF
    a[:8] = [0x0000, 0x8000, 0x0001, 0x8001, 0x3F80, 0xBF80, 0x7F7F, 0x0080]
    s[:8] = [0x8000, 0x0000, 0x0002, 0x0001, 0x3F81, 0xBF7F, 0x7F7E, 0x0000]
    for alpha in (0.5, 2.5, -0.3, 12.0):
        af = (a.astype(np.uint32) << 16).view(np.float32)
        sf = (s.astype(np.uint32) << 16).view(np.float32)
        with np.errstate(all="ignore"):
            d = af - sf
            r = af + np.float32(alpha) * d
        u = r.view(np.uint32)
        ref = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        ok = np.isfinite(r)
        out = np.empty(n, np.uint16)
        st = np.zeros(2)
        fn(a.ctypes.data, s.ctypes.data, out.ctypes.data, n, alpha, st.ctypes.data)
        if not np.array_equal(out[ok], ref[ok]):
            raise RuntimeError(f"self-test mismatch at α={alpha} in {int((out[ok] != ref[ok]).sum())} elements")


def bf16_kernel() -> Callable | None:
    """The fused kernel ``expo_bf16(a, s, out|None, n, alpha, stats)`` or None (use numpy)."""
    with _lock:
        if "bf16" in _cached:
            return _cached["bf16"]  # type: ignore[return-value]
        fn = None
        if os.environ.get("EXPO_KERNELS", "auto").lower() == "numpy":
            log.info("compute: numpy (EXPO_KERNELS=numpy)")
        elif (cc := _compiler()) is None:
            log.info("compute: numpy (no C compiler found; set CC to use the fused bf16 kernel)")
        else:
            try:
                lib = ctypes.CDLL(str(_build(cc)))
                fn = lib.expo_bf16
                fn.restype = None
                fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                               ctypes.c_float, ctypes.c_void_p]
                _self_test(fn)
                log.info("compute: fused bf16 C kernel (%s)", cc)
            except Exception as exc:  # noqa: BLE001 - any failure means: keep the numpy path
                log.warning("compute: numpy (fused bf16 kernel unavailable: %s)", exc)
                fn = None
        _cached["bf16"] = fn
        return fn
