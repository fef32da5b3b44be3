"""Streaming model extrapolation (ExPO): θ = θ_aligned + α·(θ_aligned − θ_sft), tensor by tensor.

Why this design:

* **Constant memory.** Tensors are read with ``pread`` at the byte offsets given by each
  safetensors header into a small pool of reusable buffers, in chunks of a few million elements,
  so peak RSS is a few chunks — independent of tensor, shard and model size. We never ``mmap``
  the inputs: touched mmap pages count in RSS and would grow to the whole model.
* **Streaming output.** Every output shape and dtype is known from the headers before any data
  is read, so each output shard's safetensors header is written first and chunks are then
  ``pwrite``-n at their final offsets. No shard is ever buffered.
* **Overlap.** A reader thread, ``threads`` compute threads and a writer thread form a pipeline
  over a bounded buffer pool; ``pread``/``pwrite`` and numpy kernels release the GIL.
* **One pass per element for bf16.** numpy has no bf16, so the generic path costs ~15 array
  passes per chunk; bf16 pairs (nearly every modern checkpoint) go through a small fused C
  kernel (``workflow_scripts/kernels``: built once with the system compiler, checked against
  the numpy path, numpy used whenever it is unavailable) that gives the same bits ~5× faster.
* **No torch on the hot path.** Importing torch alone costs ~200 MB of RSS and seconds of
  start-up per job; it is imported only for pickle or fp8 checkpoints.
* **Correct pairing.** Tensors are matched by name, never by shard file, and processed in the
  aligned model's on-disk order; SFT and aligned may be sharded differently.
* **Fail before writing.** Keys, shapes, dtypes, configs and the scheme are checked from the
  headers (cheap) before the output folder is created; NaN/Inf found while streaming aborts the
  atomic output, so nothing that looks finished is left behind.

Math is fp32 (fp64 for fp64 tensors); each output tensor keeps the aligned model's dtype.
Modules, in data-flow order: :mod:`.reader` (headers → tensor locations), :mod:`.plan` (pairing,
α per tensor, output layout), :mod:`.numerics` (one chunk's math), :mod:`.pipeline` (threads and
buffers), :mod:`.manifest`, :mod:`.engine` (:func:`extrapolate`), :mod:`.cli`; :mod:`.reference`
is the formula in plain numpy, the oracle of the tests.
"""

from workflow_scripts.extrapolate.cli import load_scheme_arg, main
from workflow_scripts.extrapolate.dtypes import FLOAT_CODES, torch_dtype
from workflow_scripts.extrapolate.engine import extrapolate
from workflow_scripts.extrapolate.header import read_safetensors_header, validate_safetensors
from workflow_scripts.extrapolate.manifest import describe_inputs
from workflow_scripts.extrapolate.pipeline import CHUNK_ELEMS, default_workers
from workflow_scripts.extrapolate.plan import OutTensor, Plan, plan
from workflow_scripts.extrapolate.reader import (
    Checkpoint,
    TensorInfo,
    load_checkpoint,
    num_layers_of,
)
from workflow_scripts.schemes import Scheme

__all__ = [
    "CHUNK_ELEMS",
    "FLOAT_CODES",
    "Checkpoint",
    "OutTensor",
    "Plan",
    "Scheme",
    "TensorInfo",
    "default_workers",
    "describe_inputs",
    "extrapolate",
    "load_checkpoint",
    "load_scheme_arg",
    "main",
    "num_layers_of",
    "plan",
    "read_safetensors_header",
    "torch_dtype",
    "validate_safetensors",
]
