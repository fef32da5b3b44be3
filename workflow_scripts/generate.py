"""Generation stage: answer a prompt set with one checkpoint, as alpaca_eval ``model_outputs``.

Why it is careful about the details: the seed report's reproduction decoded the prompt together
with the answer and used no chat template, then read the echoed prompt as ExPO "restating the
instruction". Here the prompt is always rendered with the model's chat template
(``add_generation_prompt=True``, the same token ids as the official ``apply_chat_template(...,
tokenize=True)``), and only the newly generated tokens are decoded.

Two backends share one interface and one decoding dict (:mod:`workflow_scripts.decoding`):

* ``hf`` — Hugging Face ``generate``: batched, prompts sorted by length (less padding), left
  padding, presence/frequency penalties via :class:`PresenceFrequencyPenaltyLogitsProcessor`;
  runs on CPU.
* ``vllm`` — what the official ExPO code used; imported lazily and only with CUDA.

``finish_reason`` is ``"stop"`` when the answer ended with an EOS id and ``"length"`` when it hit
``max_new_tokens``; ``n_tokens`` counts the generated tokens including the terminating EOS (the
way vLLM counts ``token_ids``).

A prompt too long for the model is not answered from positions the model never saw: when it
takes more than ``max_position_embeddings`` minus an answer room of ``min(max_new_tokens,
max_position_embeddings // 4)`` tokens, its instruction is cut on the right until it fits (the
chat template's end, the assistant header, is kept); the record says how many tokens were dropped
in ``prompt_truncated_tokens`` and the log counts the prompts cut. Prompts that fit are never
touched, even when prompt + ``max_new_tokens`` exceeds the positions (answers usually stop
earlier; that case is only logged).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import StageParser, cuda_available, pick_device, read_records, run_cli, setup_logging, write_json
from .decoding import (
    PresenceFrequencyPenaltyLogitsProcessor,
    hf_generation_kwargs,
    resolve_decoding,
    vllm_sampling_kwargs,
)
from .generation_provenance import build_provenance, write_provenance
from .model_kind import require_model_kind
from .prompt_encoding import (
    RESERVED_KEYS,
    _check_prompts,
    _load_tokenizer,
    _prompt_id,
    _record,
    encode_prompts,
    eos_token_ids,
    fit_prompt_ids,
    render_prompt_ids,
)
from .seeded_sampling import SEEDING, per_prompt_seeding, prompt_seed, seeded_processors

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")
DEFAULT_BATCH_SIZE = 32
"""The workflow's and the command line's batch size (answers do not depend on it; speed does)."""
CLI_DEFAULT_PRESET = "demo"
"""The command line's decoding preset: the workflow's default (the schema's ``decoding: {preset: demo}``)."""
__all__ = [
    "BACKENDS",
    "CLI_DEFAULT_PRESET",
    "DEFAULT_BATCH_SIZE",
    "RESERVED_KEYS",
    "choose_backend",
    "encode_prompts",
    "eos_token_ids",
    "fit_prompt_ids",
    "generate",
    "generate_to_file",
    "main",
    "read_prompts",
    "render_prompt_ids",
    "vllm_available",
    "write_generations",
]
"""Public names, the prompt-encoding ones re-exported from :mod:`workflow_scripts.prompt_encoding`."""

# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


def vllm_available() -> bool:
    """vLLM is usable only when installed *and* a CUDA device is visible."""
    return importlib.util.find_spec("vllm") is not None and cuda_available()


def choose_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "vllm" if vllm_available() else "hf"
    if backend == "vllm" and not vllm_available():
        raise ValueError(
            "backend 'vllm' needs the vllm package and a visible CUDA device; "
            "use backend 'hf' (or 'auto') on this machine"
        )
    return backend


def _load_hf_model(model_dir: Path, tok, dev: str):
    """The causal LM on ``dev`` with a fresh generation config, and the ids that end an answer."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    # float32 on CPU (bf16 matmuls are slow there and change greedy paths); checkpoint dtype on GPU.
    dtype = torch.float32 if dev == "cpu" else "auto"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(dev).eval()
    eos_ids = eos_token_ids(tok, model.config, getattr(model, "generation_config", None))
    # A fresh generation config: the checkpoint's own sampling knobs (min_p, typical_p,
    # repetition_penalty, ...) must not leak into a run that claims to use `decoding`.
    model.generation_config = GenerationConfig(
        eos_token_id=eos_ids, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id
    )
    return model, eos_ids


def _hf_generation_config(decoding: dict[str, Any], tok, eos_ids: list[int]):
    """The ``GenerationConfig`` for ``decoding``; greedy when each row samples with its own seed."""
    from transformers import GenerationConfig

    per_row = per_prompt_seeding(decoding)
    # Per-prompt seeds: greedy `generate` over the library's warpers plus a per-row sampler
    # (workflow_scripts.seeded_sampling), so no answer depends on its batch.
    gen_kwargs = hf_generation_kwargs(dict(decoding, do_sample=False) if per_row else decoding)
    return GenerationConfig(
        eos_token_id=eos_ids, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, **gen_kwargs
    )


def _batch_processors(decoding: dict[str, Any], input_ids, row_ids: list[str], dev: str):
    """Logits processors of one batch: presence/frequency penalties, then the per-row seeded sampler."""
    from transformers import LogitsProcessorList

    processors = []
    if decoding["presence_penalty"] or decoding["frequency_penalty"]:
        processors.append(
            PresenceFrequencyPenaltyLogitsProcessor(
                decoding["presence_penalty"], decoding["frequency_penalty"], input_ids.shape[1]
            )
        )
    processors += seeded_processors(decoding, row_ids, dev)
    return LogitsProcessorList(processors)


def _split_answer(row: list[int], eos_set: set[int]) -> tuple[list[int], int, str]:
    """Answer tokens before the first EOS, the generated-token count (EOS included) and the finish reason."""
    stop_at = next((k for k, t in enumerate(row) if t in eos_set), None)
    if stop_at is None:
        return row, len(row), "length"
    return row[:stop_at], stop_at + 1, "stop"


def _generate_hf(
    model_dir: Path,
    prompts: Sequence[Mapping[str, Any]],
    decoding: dict[str, Any],
    *,
    batch_size: int,
    generator: str,
    device: str,
) -> list[dict[str, Any]]:
    import torch
    from tqdm.auto import tqdm

    dev = pick_device(device)
    tok = _load_tokenizer(model_dir)
    model, eos_ids = _load_hf_model(model_dir, tok, dev)
    gen_config = _hf_generation_config(decoding, tok, eos_ids)

    max_pos = getattr(model.config, "max_position_embeddings", None)
    encoded, dropped = encode_prompts(tok, prompts, decoding, max_pos)
    # Longest first: similar lengths share a batch (little padding) and an OOM shows up at once.
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    ids = [_prompt_id(p, i) for i, p in enumerate(prompts)]

    results: list[dict[str, Any] | None] = [None] * len(prompts)
    eos_set = set(eos_ids)
    bar = tqdm(total=len(prompts), desc=f"generate {generator}", unit="prompt")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tok.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
        input_ids = batch["input_ids"].to(dev)
        attention_mask = batch["attention_mask"].to(dev)
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=gen_config,
                logits_processor=_batch_processors(decoding, input_ids, [ids[i] for i in idx], dev),
            )
        new_tokens = out[:, input_ids.shape[1] :].tolist()
        for row, i in zip(new_tokens, idx):
            kept, n_tokens, reason = _split_answer(row, eos_set)
            text = tok.decode(kept, skip_special_tokens=True)
            results[i] = _record(prompts[i], i, text, generator, n_tokens, reason, dropped[i])
        bar.update(len(idx))
    bar.close()
    return results  # type: ignore[return-value]


def _generate_vllm(
    model_dir: Path, prompts: Sequence[Mapping[str, Any]], decoding: dict[str, Any], *, generator: str
) -> list[dict[str, Any]]:  # pragma: no cover - needs CUDA
    from transformers import AutoConfig, GenerationConfig
    from vllm import LLM, SamplingParams  # lazy: importing vllm initialises CUDA

    tok = _load_tokenizer(model_dir)
    max_pos = getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None)
    encoded, dropped = encode_prompts(tok, prompts, decoding, max_pos)

    try:
        gen_cfg = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        gen_cfg = None
    stop_ids = [i for i in eos_token_ids(tok, None, gen_cfg) if i != tok.eos_token_id]
    base = dict(vllm_sampling_kwargs(decoding), stop_token_ids=stop_ids or None)
    seed = decoding["seed"]
    # One seed per request, from the prompt id (as the HF backend): answers do not depend on the batch.
    params = [
        SamplingParams(**dict(base, seed=prompt_seed(seed, _prompt_id(p, i)) if seed is not None else None))
        for i, p in enumerate(prompts)
    ]
    llm = LLM(
        model=str(model_dir),
        tokenizer=str(model_dir),
        dtype="auto",
        seed=decoding["seed"] if decoding["seed"] is not None else 0,  # engine RNG; requests carry their own
    )
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=True)
    results = []
    for i, (p, o) in enumerate(zip(prompts, outputs)):
        c = o.outputs[0]
        reason = "length" if c.finish_reason == "length" else "stop"
        results.append(_record(p, i, c.text, generator, len(c.token_ids), reason, dropped[i]))
    return results


def generate(
    model_dir: str | Path,
    prompts: list[dict],
    decoding: dict,
    *,
    backend: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    generator: str | None = None,
    device: str = "auto",
) -> list[dict]:
    """Answer every prompt with the checkpoint in ``model_dir``; records in the prompts' order.

    ``decoding`` may be a raw spec (``{"preset": "demo", "max_new_tokens": 32}``); it is resolved
    with :func:`resolve_decoding`. ``generator`` names the model in alpaca_eval's sense
    (default: the folder name). Returns alpaca_eval ``model_outputs`` records plus ``id``,
    ``n_tokens``, ``finish_reason`` and the prompts' extra keys (nested ones as JSON strings).

    Sampling is reproducible per prompt: each answer is drawn with its own seed, derived from
    ``seed`` and the prompt id (:mod:`workflow_scripts.seeded_sampling`), so it does not depend on
    ``batch_size``, on the prompts' order or on which other prompts are answered (both backends).
    ``seed: null`` samples unseeded.
    """
    return _generate(model_dir, prompts, decoding, backend, batch_size, generator, device)[0]


def generate_to_file(
    model_dir: str | Path,
    prompts: list[dict],
    decoding: dict,
    out: str | Path,
    *,
    backend: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    generator: str | None = None,
    device: str = "auto",
) -> list[dict]:
    """:func:`generate`, then write the records to ``out`` and their provenance beside it
    (``<out>.provenance.json``, :mod:`workflow_scripts.generation_provenance`)."""
    records, provenance = _generate(model_dir, prompts, decoding, backend, batch_size, generator, device)
    write_generations(records, out)
    write_provenance(provenance, out)
    return records


def _generate(
    model_dir: str | Path,
    prompts: list[dict],
    decoding: dict,
    backend: str,
    batch_size: int,
    generator: str | None,
    device: str,
) -> tuple[list[dict], dict]:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model folder {model_dir} does not exist")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    decoding = resolve_decoding(decoding)
    if not prompts:
        raise ValueError("no prompts to answer: the prompt set is empty")
    _check_prompts(prompts)
    require_model_kind(model_dir, "causal_lm")
    generator = generator or model_dir.name
    chosen = choose_backend(backend)
    log.info(
        "generating %d answers with %s (backend=%s, preset=%s, max_new_tokens=%d)",
        len(prompts),
        model_dir,
        chosen,
        decoding["preset"],
        decoding["max_new_tokens"],
    )
    if chosen == "vllm":
        recs = _generate_vllm(model_dir, prompts, decoding, generator=generator)
    else:
        recs = _generate_hf(model_dir, prompts, decoding, batch_size=batch_size, generator=generator, device=device)
    n_len = sum(r["finish_reason"] == "length" for r in recs)
    log.info(
        "done: %d answers, %d hit max_new_tokens, mean %.1f tokens",
        len(recs),
        n_len,
        sum(r["n_tokens"] for r in recs) / len(recs),
    )
    seeded = per_prompt_seeding(decoding)
    provenance = build_provenance(
        model_dir=model_dir,
        prompts=prompts,
        decoding=decoding,
        seeding=SEEDING if seeded else None,
        backend=chosen,
        batch_size=batch_size,
        device="cuda" if chosen == "vllm" else pick_device(device),
        generator=generator,
    )
    return recs, provenance


def write_generations(records: Iterable[Mapping[str, Any]], path: str | Path) -> None:
    """Write the alpaca_eval ``model_outputs`` JSON list atomically."""
    write_json(path, [dict(r) for r in records])


def read_prompts(path: str | Path) -> list[dict]:
    """A prompt set file: JSONL (the stage's own format) or a JSON list."""
    return read_records(path, "prompt")


def main(argv: list[str] | None = None) -> None:
    ap = StageParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint folder")
    ap.add_argument("--prompts", required=True, help="prompt set (JSONL or JSON list)")
    ap.add_argument("--out", required=True, help="output model_outputs JSON")
    ap.add_argument(
        "--preset",
        default=None,
        help=f"decoding preset (paper, demo, greedy; default {CLI_DEFAULT_PRESET}, the workflow's default)",
    )
    ap.add_argument("--decoding", default=None, help="JSON object of decoding overrides (a config's `decoding:`)")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"prompts per batch (default {DEFAULT_BATCH_SIZE}, as the workflow; the answers do not depend on it)",
    )
    ap.add_argument("--backend", default="auto", choices=BACKENDS)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--generator", default=None, help="model name in the output (default: folder)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    try:
        spec: dict[str, Any] = json.loads(args.decoding) if args.decoding else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--decoding is not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ValueError("--decoding must be a JSON object")
    if args.preset:
        spec["preset"] = args.preset
    spec.setdefault("preset", CLI_DEFAULT_PRESET)
    prompts = read_prompts(args.prompts)
    if args.limit is not None:
        prompts = prompts[: args.limit]
    generate_to_file(
        args.model,
        prompts,
        spec,
        args.out,
        backend=args.backend,
        batch_size=args.batch_size,
        generator=args.generator,
        device=args.device,
    )
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_cli(main)
