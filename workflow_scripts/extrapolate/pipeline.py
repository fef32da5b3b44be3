"""The streaming pipeline: a reader thread, compute threads and a writer thread over a fixed
pool of buffers.

Why threads: ``pread``/``pwrite``, the numpy passes and the C kernel release the GIL, so reading,
computing and writing overlap; the bounded pool keeps memory constant whatever the model size,
and each chunk is written at its final offset, so chunks may finish in any order.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from workflow_scripts.extrapolate.numerics import Chunk, Scratch, Slot, Stats, compute
from workflow_scripts.extrapolate.plan import Plan
from workflow_scripts.extrapolate.reader import Checkpoint

log = logging.getLogger(__name__)

CHUNK_ELEMS = 1 << 19
"""Elements per streamed chunk (1 MB of bf16): big enough that per-chunk Python and syscall
overhead is negligible, small enough that memory stays flat (a few chunks in flight)."""


def chunks(plan_: Plan, chunk_elems: int) -> Iterator[Chunk]:
    """Every chunk of every output tensor, in output order, with how it is to be computed."""
    for t in plan_.tensors:
        if t.s is None:
            mode_shared = "copy"
        else:
            mode_shared = "copy_stats" if t.alpha == 0.0 else "math"
        bounds = [(0, t.shared_elems, mode_shared)]
        if t.shared_elems < t.a.numel:
            bounds.append((t.shared_elems, t.a.numel, "copy_stats" if t.s is not None else "copy"))
        for lo, hi, mode in bounds:
            for e0 in range(lo, hi, chunk_elems):
                yield Chunk(t, e0, min(hi, e0 + chunk_elems), mode)


class _Stop(Exception):
    """Raised in a pipeline thread when another stage failed."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """``pwrite`` until every byte is written (a single call may write fewer)."""
    pos = 0
    while pos < len(view):
        pos += os.pwrite(fd, view[pos:], offset + pos)


class _LogProgress:
    """Progress as log lines (every 10 % or 30 s), for log files: a Snakemake job's stderr is its
    log, where a tqdm bar would be carriage-return noise — and importing tqdm (50 ms, it pulls in
    multiprocessing) would sit on the critical path of every small extrapolation."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = max(1, total), 0, time.perf_counter()
        self.next_pct, self.last = 10, self.t0

    def update(self, n: int) -> None:
        self.done += n
        pct, now = 100 * self.done / self.total, time.perf_counter()
        if pct >= self.next_pct or now - self.last >= 30:
            unit, scale = ("GB", 1e9) if self.total >= 1e9 else ("MB", 1e6)
            rate = self.done / max(now - self.t0, 1e-9) / scale
            log.info(
                "extrapolate: %3.0f%% (%.2f of %.2f %s, %.2f %s/s)",
                pct,
                self.done / scale,
                self.total / scale,
                unit,
                rate,
                unit,
            )
            self.next_pct = (int(pct) // 10 + 1) * 10
            self.last = now

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None


def _progress(total: int):
    """A tqdm bar on an interactive terminal, log lines otherwise."""
    import sys

    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, desc="extrapolate", mininterval=1.0)
    return _LogProgress(total)


def default_workers() -> int:
    """Compute threads: one per available core (at most 8). The reader and writer threads spend
    their time in pread/pwrite syscalls, so they need no core of their own: on 2 cores, 2 compute
    threads took 2.17 s against 3.06 s with 1 for a 1 GB bf16 pair (benchmarks/README.md)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def run_pipeline(
    plan_: Plan, sft: Checkpoint, aligned: Checkpoint, out_dir: Path, chunk_elems: int = CHUNK_ELEMS, workers: int = 1
) -> dict[str, Stats]:
    """Read → compute (``workers`` threads) → write all chunks; return per-tensor statistics.

    Buffers come from a fixed pool of ``workers + 3`` slots, so memory is constant. The shard
    headers are written first; the threads then fill in the data.
    """
    pipe = _Pipeline(plan_, sft, aligned, chunk_elems, workers)
    out_fds: list[int] = []
    try:
        for name, head in zip(plan_.shard_names, plan_.shard_headers):
            fd = os.open(out_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            out_fds.append(fd)
            pwrite_all(fd, memoryview(head), 0)
        pipe.run(out_fds)
    finally:
        for fd in out_fds:
            os.close(fd)
    return pipe.stats


class _Pipeline:
    """The three stages and their queues; a failure in any thread stops the others."""

    def __init__(self, plan_: Plan, sft: Checkpoint, aligned: Checkpoint, chunk_elems: int, workers: int) -> None:
        from workflow_scripts.kernels import bf16_kernel

        def isz(ts) -> int:
            return max((x.itemsize for x in ts), default=1)

        self.plan, self.sft, self.aligned = plan_, sft, aligned
        self.chunk_elems, self.workers = chunk_elems, workers
        n_a = isz([t.a for t in plan_.tensors])
        n_s = isz([t.s for t in plan_.tensors if t.s is not None])
        self.kernel = bf16_kernel() if any(t.a.dtype == "BF16" for t in plan_.tensors) else None
        n_slots = workers + 3
        self.slots = [Slot(chunk_elems * n_a, chunk_elems * n_s, chunk_elems * n_a) for _ in range(n_slots)]
        self.free_q: queue.Queue = queue.Queue()
        for i in range(n_slots):
            self.free_q.put(i)
        self.ready_q: queue.Queue = queue.Queue(maxsize=n_slots)
        self.write_q: queue.Queue = queue.Queue(maxsize=n_slots)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.stats: dict[str, Stats] = {t.name: Stats() for t in plan_.tensors}
        self.out_fds: list[int] = []

    def run(self, out_fds: list[int]) -> None:
        """Run all threads to completion; re-raise the first error (or an interrupt) here."""
        self.out_fds = out_fds
        threads = [
            threading.Thread(target=self._guard(self._reader), name="expo-reader", daemon=True),
            threading.Thread(target=self._guard(self._writer), name="expo-writer", daemon=True),
        ]
        threads += [
            threading.Thread(target=self._guard(self._worker), name=f"expo-worker-{k}", daemon=True)
            for k in range(self.workers)
        ]
        for th in threads:
            th.start()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(timeout=0.5)
        except BaseException:  # KeyboardInterrupt, a signal: stop the pipeline before cleaning up
            self.stop.set()
            for th in threads:
                th.join()
            raise
        if self.errors:
            raise self.errors[0]

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except _Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised by the calling thread
                self.errors.append(exc)
                self.stop.set()

        return run

    def _reader(self) -> None:
        for ch in chunks(self.plan, self.chunk_elems):
            i = _get(self.free_q, self.stop)
            a_raw, s_raw, _ = self.slots[i].bufs
            self.aligned.read_into(ch.t.name, ch.e0, ch.e1, a_raw)
            if ch.mode == "math" or (ch.mode == "copy_stats" and ch.e1 <= ch.t.shared_elems):
                self.sft.read_into(ch.t.s.name, ch.e0, ch.e1, s_raw)
            _put(self.ready_q, (ch, i), self.stop)
        for _ in range(self.workers):
            _put(self.ready_q, None, self.stop)

    def _worker(self) -> None:
        sc = Scratch(self.chunk_elems, self.kernel)
        while True:
            item = _get(self.ready_q, self.stop)
            if item is None:
                _put(self.write_q, None, self.stop)
                return
            ch, i = item
            which, dd, aa = compute(ch, self.slots[i], sc)
            _put(self.write_q, (ch, i, which, dd, aa), self.stop)

    def _writer(self) -> None:
        ended = 0
        with _progress(sum(self.plan.shard_sizes)) as bar:
            while ended < self.workers:
                item = _get(self.write_q, self.stop)
                if item is None:
                    ended += 1
                    continue
                ch, i, which, dd, aa = item
                nbytes = (ch.e1 - ch.e0) * ch.t.a.itemsize
                view = memoryview(self.slots[i].bufs[which])[:nbytes]
                pwrite_all(self.out_fds[ch.t.shard], view, ch.t.out_offset + ch.e0 * ch.t.a.itemsize)
                self.free_q.put(i)
                st = self.stats[ch.t.name]
                st.dd += dd
                st.aa += aa
                st.n += ch.e1 - ch.e0
                bar.update(nbytes)
