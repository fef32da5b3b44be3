"""One seed of the shapes world end to end without Snakemake: SFT → DPO / DDPO on 20 % → LLM-only
ExPO α sweep → CHAIR / recall / POPE with CIs. Prints a JSON table (numbers for the report note).

The α step here extrapolates ``language_model.*`` tensors in torch (θ = θ_a + α(θ_a − θ_sft),
vision tower and projector kept as aligned) as a stand-in until the engine's component schemes
exist; the workflow itself must use the engine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from workflow_scripts.common import write_jsonl
from workflow_scripts.hallucination import evaluate_records
from workflow_scripts.multimodal import tiny_llava
from workflow_scripts.train.vlm import train_vlm
from workflow_scripts.vlm_generate import generate_vlm
from workflow_scripts.world import shapes as S
from workflow_scripts.world.tokenizer import train_tokenizer

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
DECODE = dict(preset="greedy", do_sample=True, temperature=1.0, top_p=1.0, top_k=None, max_new_tokens=24, seed=0)


def extrapolate_llm(sft: Path, aligned: Path, out: Path, alpha: float) -> Path:
    import shutil

    from safetensors.torch import load_file, save_file

    s, a = load_file(sft / "model.safetensors"), load_file(aligned / "model.safetensors")
    shutil.copytree(aligned, out, dirs_exist_ok=True)
    merged = {k: (v + alpha * (v - s[k]) if "language_model" in k else v) for k, v in a.items()}
    save_file(merged, out / "model.safetensors", metadata={"format": "pt"})
    return out


def summary(m: dict) -> dict:
    c, p = m["chair"], m["pope"]["all"]
    keys = ("chair_i", "chair_s", "recall", "object_f1")
    out = {k: [round(c[k], 3), round(c[f"{k}_ci_low"], 3), round(c[f"{k}_ci_high"], 3)] for k in keys}
    out["pope_acc"] = [round(p["accuracy"], 3), round(p["accuracy_ci_low"], 3), round(p["accuracy_ci_high"], 3)]
    out["pope_adv_acc"] = round(m["pope"]["adversarial"]["accuracy"], 3)
    out["yes_ratio"] = round(p["yes_ratio"], 3)
    return out


def main(root: str, seed: int = 0) -> None:
    d = Path(root)
    t0 = time.time()
    w = S.build_shapes_world(seed=seed, n_sft=150, n_pref=150, n_eval=40, n_dev=1)
    write_jsonl(d / "sft.jsonl", w["sft"])
    write_jsonl(d / "prefs.jsonl", w["prefs"])
    texts = [f"{r['prompt']} {r['completion']}" for r in w["sft"]] + [r["rejected"] for r in w["prefs"]]
    train_tokenizer(texts, vocab_size=120).save_pretrained(d / "tok")
    tiny_llava(d / "tok", d / "base", text=TEXT, vision=VISION, seed=seed)
    fast = dict(threads=2, device="cpu", max_length=64, seed=seed)
    train_vlm(d / "base", d / "sft.jsonl", d / "sft", method="sft", lr=3e-3, epochs=2, batch_size=16, **fast)
    models = {"sft": d / "sft"}
    for method, ddpo in (("dpo", None), ("ddpo", {"gamma": 2.0, "average": False})):
        out = d / method
        man = train_vlm(
            d / "sft",
            d / "prefs.jsonl",
            out,
            method=method,
            ddpo=ddpo,
            fraction=0.2,
            beta=0.1,
            lr=5e-4,
            epochs=2,
            batch_size=8,
            **fast,
        )
        models[method] = out
        print(method, "reward acc", man.get("tail_mean_rewards/accuracies"), file=sys.stderr)
    for alpha in (1.0, 2.0, 4.0):
        models[f"dpo_a{alpha:g}"] = extrapolate_llm(d / "sft", d / "dpo", d / f"dpo_a{alpha:g}", alpha)
    table = {}
    for name, folder in models.items():
        recs = generate_vlm(folder, w["eval"], DECODE, generator=name, batch_size=64, device="cpu")
        table[name] = summary(evaluate_records(recs, S.shapes_vocab()))
        print(name, table[name], file=sys.stderr)
    table["_seconds"] = round(time.time() - t0)
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
