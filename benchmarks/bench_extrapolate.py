"""Benchmark: streaming extrapolation vs in-memory transformers vs mergekit vs the I/O floor.

Builds a synthetic, differently sharded bf16 checkpoint pair (Llama layout, TinyLlama widths,
depth chosen to reach ``--size-gb`` per model), then runs each approach in its own subprocess
and measures wall time and peak RSS (``os.wait4`` rusage of that child), side by side in one
run. Prints a table of ratios against the engine's targets:

* wall ≤ 1.25× the I/O floor (reading both inputs + writing one output of the same size);
* peak RSS ≤ 3× the largest tensor + 300 MB;
* ≥ 2× faster and ≥ 5× less memory than the plain in-memory approach and mergekit.

Usage::

    python benchmarks/bench_extrapolate.py                 # 1 GB per model (the default size)
    python benchmarks/bench_extrapolate.py --size-gb 0.2   # quick check

mergekit runs from ``--mergekit-python`` (default /tmp/venv_mergekit/bin/python, a separate venv
so its pins cannot disturb the project's); it is skipped with a printed reason when missing.
Inputs are read once before timing so every approach reads from the same (warm) page cache; no
approach fsyncs its output, and before each timed run earlier outputs are deleted and ``sync``
called, so no run pays for the previous one's background writeback. Temporary files are deleted at
the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6

FLOOR_CODE = r"""
import sys, os
bufsize = 16 << 20
buf = bytearray(bufsize)
mv = memoryview(buf)
total_out = int(sys.argv[1]); out = sys.argv[2]; files = sys.argv[3:]
for f in files:
    with open(f, 'rb', buffering=0) as fh:
        while fh.readinto(buf):
            pass
with open(out, 'wb', buffering=0) as fh:
    left = total_out
    while left > 0:
        left -= fh.write(mv[:min(bufsize, left)])
"""

PLAIN_CODE = r"""
import sys, torch
from transformers import AutoModelForCausalLM
sft, aligned, out, alpha = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s = AutoModelForCausalLM.from_pretrained(sft, dtype=torch.bfloat16)
a = AutoModelForCausalLM.from_pretrained(aligned, dtype=torch.bfloat16)
ref = s.state_dict()
with torch.no_grad():
    for name, p in a.named_parameters():
        p.copy_(p.float() + alpha * (p.float() - ref[name].float()))   # fp32 math, like ours
a.save_pretrained(out)
"""


def synth_config(size_gb: float) -> dict:
    """Llama config with TinyLlama widths and enough layers for ``size_gb`` of bf16 weights."""
    h, inter, vocab, heads, kv = 2048, 5632, 32000, 32, 4
    head_dim = h // heads
    per_layer = 2 * h * h + 2 * h * kv * head_dim + 3 * h * inter + 2 * h
    fixed = 2 * vocab * h + h
    layers = max(1, int(-(-(size_gb * 1e9 / 2 - fixed) // per_layer)))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": h,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def tensor_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kvd = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    out = [("model.embed_tokens.weight", (v, h))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kvd, h)),
            (p + "self_attn.v_proj.weight", (kvd, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (inter, h)),
            (p + "mlp.up_proj.weight", (inter, h)),
            (p + "mlp.down_proj.weight", (h, inter)),
        ]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    return out


def write_model(path: Path, cfg: dict, tensors: dict, shard_bytes: int, order: list[str]) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    shards, cur, size = [], [], 0
    for n in order:
        nb = tensors[n].numel() * 2
        if cur and size + nb > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(n)
        size += nb
    shards.append(cur)
    wm = {}
    for i, names in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n] for n in names}, path / fname, metadata={"format": "pt"})
        wm.update({n: fname for n in names})
    total = sum(t.numel() * 2 for t in tensors.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": wm})
    )
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))


def build_pair(root: Path, size_gb: float) -> tuple[Path, Path, int, int]:
    """Write SFT (400 MB shards, name order) and aligned (300 MB shards, head first) checkpoints.

    Tensors are generated in one go per model; the generator's memory is irrelevant because
    only the measured subprocesses' RSS is reported.
    """
    import torch

    cfg = synth_config(size_gb)
    shapes = tensor_shapes(cfg)
    g = torch.Generator().manual_seed(0)
    sft = {n: (torch.randn(s, generator=g) * 0.02).to(torch.bfloat16) for n, s in shapes}
    order = [n for n, _ in shapes]
    write_model(root / "sft", cfg, sft, 400 * 2**20, order)
    aligned = {n: (t.float() + torch.randn(t.shape, generator=g) * 1e-3).to(torch.bfloat16) for n, t in sft.items()}
    del sft
    write_model(root / "aligned", cfg, aligned, 300 * 2**20, ["lm_head.weight"] + order[:-1])
    total = sum(t.numel() * 2 for t in aligned.values())
    largest = max(t.numel() * 2 for t in aligned.values())
    return root / "sft", root / "aligned", total, largest


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; return wall seconds, peak RSS (bytes) of that process tree, rc and stderr tail."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    err_chunks = []
    # read stderr concurrently so a chatty child cannot block on a full pipe
    import threading

    th = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    th.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    th.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = (err_chunks[0] if err_chunks else b"").decode(errors="replace")
    return {"wall": wall, "rss": ru.ru_maxrss * 1024, "rc": proc.returncode, "err": err[-2000:]}


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir() if f.suffix == ".safetensors")


def warm(paths: list[Path]) -> None:
    for p in paths:
        for f in sorted(p.glob("*.safetensors")):
            with open(f, "rb", buffering=0) as fh:
                while fh.read(16 << 20):
                    pass


def compare_outputs(ours: Path, other: Path, names: list[str]) -> float:
    """Max |ours − other| over a few tensors (0.0 means bit-identical values)."""
    from safetensors import safe_open

    def get(folder: Path, n: str):
        idx = folder / "model.safetensors.index.json"
        f = folder / (json.loads(idx.read_text())["weight_map"][n] if idx.exists() else "model.safetensors")
        with safe_open(f, "pt") as fh:
            return fh.get_tensor(n).float()

    return max(float((get(ours, n) - get(other, n)).abs().max()) for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0, help="bf16 size of each synthetic model (default 1.0)")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp dir in /tmp)")
    ap.add_argument("--repeats", type=int, default=3, help="run floor and engine this many times (min reported)")
    ap.add_argument("--threads", type=int, default=None, help="--threads for our engine")
    ap.add_argument("--skip-numpy", action="store_true", help="don't also time the engine with EXPO_KERNELS=numpy")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--skip-mergekit", action="store_true")
    ap.add_argument("--mergekit-python", default="/tmp/venv_mergekit/bin/python")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic checkpoints and outputs")
    ap.add_argument("--_build", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._build:
        _, _, total, largest = build_pair(args._build, args.size_gb)
        (args._build / "pair.json").write_text(json.dumps({"total": total, "largest": largest}))
        return

    root = Path(tempfile.mkdtemp(prefix="bench_expo_", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        # Built in a child: a big parent would inflate every measured child's ru_maxrss (Linux
        # carries the parent's high-water mark through fork/exec).
        subprocess.run([sys.executable, __file__, "--_build", str(root), "--size-gb", str(args.size_gb)], check=True)
        info = json.loads((root / "pair.json").read_text())
        sft, aligned, total, largest = root / "sft", root / "aligned", info["total"], info["largest"]
        print(
            f"synthetic pair: {total / 1e9:.2f} GB per model (bf16), largest tensor {largest / MB:.0f} MB, "
            f"built in {time.perf_counter() - t0:.0f} s under {root}",
            flush=True,
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        inputs = sorted(sft.glob("*.safetensors")) + sorted(aligned.glob("*.safetensors"))
        os.sync()  # flush the freshly built pair now, not in the background of the first timings
        warm([sft, aligned])

        runs: dict[str, list[dict]] = {"io_floor": [], "ours": [], "ours_numpy": []}
        engine_cmd = [
            sys.executable,
            "-m",
            "workflow_scripts.extrapolate",
            "--sft",
            str(sft),
            "--aligned",
            str(aligned),
            "--alpha",
            str(args.alpha),
            "--out",
            str(root / "out_ours"),
        ]
        if args.threads:
            engine_cmd += ["--threads", str(args.threads)]
        numpy_cmd = [str(root / "out_numpy") if x == str(root / "out_ours") else x for x in engine_cmd]

        def clean() -> None:
            """No earlier output and no dirty pages left: every run starts from the same state
            (otherwise the kernel's background writeback of the last run lands in the next one)."""
            for d in ("out_ours", "out_numpy"):
                shutil.rmtree(root / d, ignore_errors=True)
            (root / "floor.bin").unlink(missing_ok=True)
            os.sync()

        for rep in range(args.repeats):
            clean()
            runs["io_floor"].append(
                measure([sys.executable, "-c", FLOOR_CODE, str(total), str(root / "floor.bin"), *map(str, inputs)], env)
            )
            clean()
            runs["ours"].append(measure(engine_cmd, env))
            if not args.skip_numpy:  # the same engine with the fused C kernel switched off
                shutil.move(root / "out_ours", root / "kept_ours")
                clean()
                runs["ours_numpy"].append(measure(numpy_cmd, {**env, "EXPO_KERNELS": "numpy"}))
                shutil.move(root / "kept_ours", root / "out_ours")
            print(
                f"  rep {rep + 1}: " + ", ".join(f"{k} {v[-1]['wall']:.2f} s" for k, v in runs.items() if v), flush=True
            )
        (root / "floor.bin").unlink(missing_ok=True)
        for k in ("ours", "ours_numpy"):
            if runs[k] and runs[k][-1]["rc"] != 0:
                raise SystemExit(f"our engine ({k}) failed:\n{runs[k][-1]['err']}")
        path = [ln.split("compute: ", 1)[1] for ln in runs["ours"][-1]["err"].splitlines() if "compute: " in ln]
        print(f"  our compute path: {path[0] if path else 'unknown'}", flush=True)
        check = ["model.layers.0.mlp.down_proj.weight", "lm_head.weight", "model.norm.weight"]
        results = {k: min(v, key=lambda r: r["wall"]) for k, v in runs.items() if v}
        notes: dict[str, str] = {}
        # floor and engine run back to back in each repeat: the median of those paired ratios is
        # robust to a lucky or unlucky single run (this VM's steal time moves walls by ±20 %)
        paired = sorted(o["wall"] / f["wall"] for f, o in zip(runs["io_floor"], runs["ours"]))
        ratio_note = (
            f"per-repeat ours/floor: {', '.join(f'{r:.2f}' for r in paired)}; median {statistics.median(paired):.2f}"
        )
        notes["io_floor"] = ratio_note

        if args.skip_plain:
            notes["plain"] = "skipped (--skip-plain)"
        else:
            os.sync()
            r = measure(
                [sys.executable, "-c", PLAIN_CODE, str(sft), str(aligned), str(root / "out_plain"), str(args.alpha)],
                env,
            )
            if r["rc"] == 0:
                results["plain"] = r
            else:
                notes["plain"] = "failed: " + r["err"].strip().splitlines()[-1] if r["err"].strip() else "failed"

        mk = Path(args.mergekit_python)
        if args.skip_mergekit:
            notes["mergekit"] = "skipped (--skip-mergekit)"
        elif not mk.exists() or subprocess.run([str(mk), "-c", "import mergekit"], capture_output=True).returncode:
            notes["mergekit"] = f"skipped: mergekit not importable with {mk} (pip install mergekit into a venv)"
        else:
            cfg = root / "mergekit.yml"
            # task_arithmetic with normalize: false is ExPO: sft + (1 + α)(aligned − sft)
            cfg.write_text(
                f"merge_method: task_arithmetic\nbase_model: {sft}\nmodels:\n  - model: {aligned}\n"
                f"    parameters:\n      weight: {1 + args.alpha}\nparameters:\n  normalize: false\n"
                f"dtype: bfloat16\n"
            )
            cli = mk.parent / "mergekit-yaml"
            os.sync()
            r = measure(
                [
                    str(cli),
                    str(cfg),
                    str(root / "out_mergekit"),
                    "--no-cuda",
                    "--no-copy-tokenizer",
                    "--quiet",
                    "--no-write-model-card",
                ],
                {**env, "PYTHONPATH": ""},
            )
            if r["rc"] == 0:
                results["mergekit"] = r
            else:
                tail = r["err"].strip().splitlines()
                notes["mergekit"] = "failed: " + (tail[-1] if tail else f"rc={r['rc']}")

        # Output checks only after all measurements (importing torch here would not matter to the
        # children's RSS any more, but keeps the parent small while they run).
        if "ours_numpy" in results:
            import filecmp

            same = all(
                filecmp.cmp(root / "out_ours" / f.name, f, shallow=False)
                for f in sorted((root / "out_numpy").glob("*.safetensors"))
            )
            notes["ours_numpy"] = f"EXPO_KERNELS=numpy; output {'bit-identical to' if same else 'DIFFERS from'} ours"
        for k in ("plain", "mergekit"):
            if k in results:
                notes[k] = (
                    f"max|ours-{k}| over {len(check)} tensors = "
                    f"{compare_outputs(root / 'out_ours', root / f'out_{k}', check):g}"
                )
        print_table(results, notes, total, largest, args)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def print_table(results: dict, notes: dict, total: int, largest: int, args) -> None:
    ours = results["ours"]
    print(f"\nExPO extrapolation, {total / 1e9:.2f} GB bf16 per model, α={args.alpha}, cpus={os.cpu_count()}")
    print(f"{'approach':<10} {'wall s':>8} {'peak RSS MB':>12} {'GB/s out':>9}   (min of {args.repeats} runs)")
    for k in ("io_floor", "ours", "ours_numpy", "plain", "mergekit"):
        if k in results:
            r = results[k]
            print(f"{k:<10} {r['wall']:>8.2f} {r['rss'] / MB:>12.0f} {total / 1e9 / r['wall']:>9.2f}")
        else:
            print(f"{k:<10} {'-':>8} {'-':>12} {'-':>9}")
    if "ours_numpy" in results:
        print(f"fused kernel speed-up over the numpy path: {results['ours_numpy']['wall'] / ours['wall']:.2f}x")
    for k, v in notes.items():
        print(f"  {k}: {v}")
    rss_target = 3 * largest + 300 * MB
    print("\ntarget                                   measured    goal     ok")
    rows = [
        ("wall / I/O floor", ours["wall"] / results["io_floor"]["wall"], "<= 1.25", lambda x: x <= 1.25),
        (f"peak RSS / (3*{largest / MB:.0f} MB + 300 MB)", ours["rss"] / rss_target, "<= 1", lambda x: x <= 1.0),
    ]
    for k in ("plain", "mergekit"):
        if k in results:
            rows.append((f"{k} wall / ours", results[k]["wall"] / ours["wall"], ">= 2", lambda x: x >= 2))
            rows.append((f"{k} RSS / ours", results[k]["rss"] / ours["rss"], ">= 5", lambda x: x >= 5))
    for name, val, goal, ok in rows:
        print(f"{name:<40} {val:>8.2f}  {goal:>7}  {'yes' if ok(val) else 'NO'}")


if __name__ == "__main__":
    main()
