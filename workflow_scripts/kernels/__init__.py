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
import math
import os
import random
import shutil
import struct
import threading
from collections.abc import Callable
from pathlib import Path

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
    """Compile the kernel once per (source, compiler binary, flags); concurrent jobs race harmlessly.

    The compiler is identified by its resolved path, size and mtime rather than by running
    ``cc --version``: a cache hit then costs no subprocess (this runs once per extrapolation job).
    """
    exe = os.path.realpath(shutil.which(cc.split()[0]) or cc.split()[0])
    st = os.stat(exe)
    ident = f"{cc}|{exe}|{st.st_size}|{st.st_mtime_ns}|{' '.join(CFLAGS)}".encode()
    key = hashlib.sha256(SOURCE.read_bytes() + ident).hexdigest()[:16]
    out = cache_dir() / f"expo_bf16-{key}.so"
    if out.exists():
        return out
    import subprocess
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".expo_bf16-", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [*cc.split(), *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, out)  # atomic: another job never loads a half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _f32(x: float) -> float:
    """Round a Python float to float32 (raises OverflowError beyond the float32 range)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _reference(a: int, s: int, alpha: float) -> int | None:
    """The numpy path's result for one bf16 pair, in pure Python (None: not finite).

    Doubles hold every float32 sum, difference and product closely enough that rounding them to
    float32 again gives the float32 result exactly (53 ≥ 2·24 + 2 bits), so this is bit-exact.
    """
    fa = struct.unpack("<f", struct.pack("<I", a << 16))[0]
    fs = struct.unpack("<f", struct.pack("<I", s << 16))[0]
    try:
        r = _f32(fa + _f32(_f32(alpha) * _f32(fa - fs)))
    except OverflowError:
        return None
    if math.isinf(r) or math.isnan(r):
        return None
    u = struct.unpack("<I", struct.pack("<f", r))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def _self_test(fn: Callable, n: int = 301) -> None:
    """Compare with the reference on values that exercise rounding ties, signs, subnormals and
    large magnitudes; a miscompiled kernel (e.g. a compiler that contracts to FMA) is refused.
    Pure Python, so that loading the kernel does not import numpy."""
    rng = random.Random(0)

    def finite_bf16() -> int:
        h = rng.getrandbits(16)
        return h & 0xBFFF if (h & 0x7F80) == 0x7F80 else h  # no inf/NaN inputs

    edge_a = [0x0000, 0x8000, 0x0001, 0x8001, 0x3F80, 0xBF80, 0x7F7F, 0x0080]
    edge_s = [0x8000, 0x0000, 0x0002, 0x0001, 0x3F81, 0xBF7F, 0x7F7E, 0x0000]
    a = edge_a + [finite_bf16() for _ in range(n - len(edge_a))]
    # s close to a most of the time (like real weights) so the rounding of small Δ is exercised
    s = edge_s + [(x + rng.randint(-3, 3)) & 0xFFFF if rng.random() < 0.7 else finite_bf16() for x in a[len(edge_a) :]]
    s = [h & 0xBFFF if (h & 0x7F80) == 0x7F80 else h for h in s]
    arr_a, arr_s = (ctypes.c_uint16 * n)(*a), (ctypes.c_uint16 * n)(*s)
    for alpha in (0.5, 2.5, -0.3, 12.0):
        out, st = (ctypes.c_uint16 * n)(), (ctypes.c_double * 2)()
        fn(ctypes.addressof(arr_a), ctypes.addressof(arr_s), ctypes.addressof(out), n, alpha, ctypes.addressof(st))
        bad = [i for i in range(n) if (ref := _reference(a[i], s[i], alpha)) is not None and out[i] != ref]
        if bad:
            raise RuntimeError(f"self-test mismatch at α={alpha} in {len(bad)} elements")


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
                fn.argtypes = [
                    ctypes.c_void_p,
                    ctypes.c_void_p,
                    ctypes.c_void_p,
                    ctypes.c_int64,
                    ctypes.c_float,
                    ctypes.c_void_p,
                ]
                _self_test(fn)
                log.info("compute: fused bf16 C kernel (%s)", cc)
            except Exception as exc:  # noqa: BLE001 - any failure means: keep the numpy path
                log.warning("compute: numpy (fused bf16 kernel unavailable: %s)", exc)
                fn = None
        _cached["bf16"] = fn
        return fn
