"""Per-token cost of decoding-time (logit) extrapolation against weight extrapolation, in process.

The workflow's job timings (``report/logit_vs_weight.csv``) include interpreter start-up, imports
and model loading, which dominate on the demo world's tiny models; this times only the answering,
warm, in one process: the weight-extrapolated checkpoint (one model per token) and the logit
variant (aligned + SFT per token) on the same prompts, decoding and α.

    OMP_NUM_THREADS=1 python benchmarks/bench_logit.py --experiment demo_search --alpha 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from workflow_scripts.common import format_alpha  # noqa: E402
from workflow_scripts.experiment import Experiment  # noqa: E402
from workflow_scripts.generate import generate, read_prompts  # noqa: E402
from workflow_scripts.logit_extrapolation import generate_logit_extrapolated  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, int]:
    """(median seconds of ``repeats`` warm runs, generated tokens of one run); one warm-up first."""
    fn()
    times, n_tok = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        recs = fn()
        times.append(time.perf_counter() - t0)
        n_tok = sum(r["n_tokens"] for r in recs)
    return statistics.median(times), n_tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", default="experiments/demo_search.yaml")
    ap.add_argument("--pair", default="dpo")
    ap.add_argument("--prompt-set", default="eval")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    exp = Experiment(yaml.safe_load(Path(args.configfile).read_text()), check=False)
    L, pair = exp.layout, exp.pairs[args.pair]
    prompts = read_prompts(L.prompts(args.prompt_set))
    decoding = dict(exp.decoding())
    decoding.pop("backend", None)
    batch = int(decoding.pop("batch_size", 16))
    weight_dir = L.extrapolated(args.pair, f"alpha{format_alpha(args.alpha)}")
    aligned, sft = exp.model_dir(pair["aligned"]), exp.model_dir(pair["sft"])
    rows = {
        "weight": timed(lambda: generate(weight_dir, prompts, decoding, backend="hf", batch_size=batch), args.repeats),
        "logit": timed(
            lambda: generate_logit_extrapolated(aligned, sft, args.alpha, prompts, decoding, batch_size=batch),
            args.repeats,
        ),
    }
    for kind, (sec, n_tok) in rows.items():
        out = {"kind": kind, "alpha": args.alpha, "prompts": len(prompts), "tokens": n_tok, "seconds": round(sec, 3)}
        print(json.dumps({**out, "ms_per_token": round(1000 * sec / max(n_tok, 1), 2)}))


if __name__ == "__main__":
    main()
