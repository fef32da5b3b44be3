"""Layer-group search: refine the best uniform α per group of layers, coarse partitions first.

Why coordinate search with a noise gate: per-layer α has as many free values as the model has
layers, and the dev set is small, so a search that keeps any step that *looks* better fits the dev
noise. Here a round tries, for every group of the current partition, the incumbent with that
group's α multiplied and divided by ``step`` (all of them in parallel); the best move is kept only
when its paired dev-difference CI against the incumbent lies above zero — at a Bonferroni-corrected
level over the round's moves, because picking the best of many moves is itself a selection. When
no move is kept, the partition gets finer (thirds → sixths → per layer) with each fine group
inheriting its coarse group's α; the search ends when the finest partition keeps nothing or the
budget is used.

Partitions: ``thirds``, ``sixths`` (by depth fraction, the engine's rule), ``layers`` (one group
per decoder layer, needs the depth); ``split_attn_mlp`` splits every group into its attention and
MLP sub-layers (each with the norm in front of it). ``components`` (e.g. vision-language pairs:
``[vision_tower, multi_modal_projector, language_model]``) makes a partition of tensor-name
filters over all layers; tensors outside decoder layers (a projector without layer indices, say)
are matched by no group and keep the starting α.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .core import Candidate, Replay, SearchResult, round_sig
from .objective import Evaluation, Scorer

FRACTION_PARTITIONS = {"thirds": 3, "sixths": 6}
COMPONENTS = "components"
ATTN = ("self_attn", "input_layernorm", ".attn.", ".ln_1.")
MLP = ("mlp", "post_attention_layernorm", ".ln_2.")


@dataclass(frozen=True)
class LayerConfig:
    """Knobs of the layer-group search (config ``extrapolation.search.layers``)."""

    partitions: tuple[str, ...] = ("thirds", "sixths", "layers")
    split_attn_mlp: bool = False
    components: tuple[str, ...] = ()
    step: float = 2.0
    budget: int = 24
    level: float = 0.95
    bonferroni: bool = True

    def __post_init__(self) -> None:
        known = {*FRACTION_PARTITIONS, "layers", COMPONENTS}
        bad = [p for p in self.partitions if p not in known]
        if bad or not self.partitions:
            raise ValueError(f"layer search partitions {list(self.partitions)}: choose from {sorted(known)}")
        if COMPONENTS in self.partitions and not self.components:
            raise ValueError("layer search partition 'components' needs a list of component name filters")
        if not self.step > 1:
            raise ValueError(f"layer search step must be > 1 (a multiplicative step), got {self.step}")

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> LayerConfig:
        kw = dict(spec)
        unknown = sorted(set(kw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown layer search key(s) {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        for k in ("partitions", "components"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def partition_name(cfg: LayerConfig, base: str) -> str:
    return f"{base}+attn_mlp" if cfg.split_attn_mlp and base != COMPONENTS else base


def partition_groups(partition: str, num_layers: int | None, cfg: LayerConfig) -> list[dict[str, Any]]:
    """The scheme groups of a partition (without α), in a fixed order."""
    base = partition.split("+")[0]
    if base == COMPONENTS:
        return [{"name": c, "layers": [0.0, 1.0], "modules": [c]} for c in cfg.components]
    if base == "layers":
        if not num_layers:
            raise ValueError("the per-layer partition needs the model's num_hidden_layers")
        ranges = [{"name": f"layer{i}", "layers": [i, i + 1], "by": "index"} for i in range(num_layers)]
    else:
        k = FRACTION_PARTITIONS[base]
        ranges = [{"name": f"{base}{j}", "layers": [j / k, (j + 1) / k if j + 1 < k else 1.0]} for j in range(k)]
    if not partition.endswith("+attn_mlp"):
        return ranges
    halves = (("attn", ATTN), ("mlp", MLP))
    return [{**g, "name": f"{g['name']}_{kind}", "modules": list(mods)} for g in ranges for kind, mods in halves]


def layer_sets(partition: str, num_layers: int | None, cfg: LayerConfig) -> list[frozenset] | None:
    """Per group, the (layer, sub-layer kind) pairs it covers — None when that is not known (no
    depth, or a component partition, whose groups are tensor-name filters)."""
    if not num_layers or partition.startswith(COMPONENTS):
        return None
    out = []
    for g in partition_groups(partition, num_layers, cfg):
        start, end = g["layers"]
        by_index = g.get("by") == "index"
        pos = [i for i in range(num_layers) if (start <= (i if by_index else (i + 0.5) / num_layers) < end)]
        kind = g["name"].rsplit("_", 1)[-1] if "+attn_mlp" in partition else "all"
        out.append(frozenset((i, kind) for i in pos))
    return out


def _same_split(a: list[frozenset] | None, b: list[frozenset] | None) -> bool:
    """Whether two partitions split the layers the same way (empty groups aside)."""
    return a is not None and b is not None and {g for g in a if g} == {g for g in b if g}


def _center(group: dict[str, Any], num_layers: int | None) -> float:
    start, end = group["layers"]
    if group.get("by") == "index":
        return (start + end) / 2.0 / num_layers  # type: ignore[operator]
    return (start + end) / 2.0


def scheme_spec(c: Candidate, num_layers: int | None, cfg: LayerConfig) -> dict[str, Any]:
    """The engine's scheme config for a candidate (a uniform candidate is ``{alpha: a}``).

    Embeddings take the first group's α and final norm / lm_head the last group's, as the presets
    do; tensors no group matches keep the first α of the search (``default``).
    """
    if c.is_uniform:
        return {"alpha": c.alpha}
    if num_layers is None and c.partition.split("+")[0] == "layers" and c.alphas:
        num_layers = len(c.alphas) // (2 if c.partition.endswith("+attn_mlp") else 1)
    groups = partition_groups(c.partition, num_layers, cfg)
    if len(groups) != len(c.alphas):
        raise ValueError(f"candidate {c.name}: {len(c.alphas)} α values for {len(groups)} groups of {c.partition}")
    out = [{**g, "alpha": a} for g, a in zip(groups, c.alphas)]
    return {"groups": out, "embed": c.alphas[0], "norm": c.alphas[-1], "lm_head": c.alphas[-1], "default": c.alphas[0]}


def _canonical(alphas: list[float], partition: str) -> Candidate:
    """A vector with one α everywhere is the uniform model: the same file as the uniform search's."""
    if len(set(alphas)) == 1 and not partition.startswith(COMPONENTS):
        return Candidate.uniform(alphas[0])
    return Candidate(tuple(alphas), partition)


def _refine_vector(vec: list[float], old: str, new: str, num_layers: int | None, cfg: LayerConfig) -> list[float]:
    """Each group of ``new`` takes the α of the ``old`` group that holds its centre (same sub-layer kind)."""
    olds = partition_groups(old, num_layers, cfg)
    out = []
    for g in partition_groups(new, num_layers, cfg):
        c = _center(g, num_layers)
        kind = g["name"].rsplit("_", 1)[-1] if "+attn_mlp" in new else None
        hit = next(
            i
            for i, o in enumerate(olds)
            if o["layers"][0] <= c * (num_layers if o.get("by") == "index" else 1) < o["layers"][1] + 1e-12
            and (kind is None or o["name"].endswith(kind))
        )
        out.append(vec[hit])
    return out


def _moves(vec: list[float], partition: str, step: float, sets: list[frozenset] | None) -> list[Candidate]:
    """Each group's α times and divided by ``step``; a group that covers no layer has no moves (the
    model would not change)."""
    out = []
    for g in range(len(vec)):
        if sets is not None and not sets[g]:
            continue
        for f in (step, 1.0 / step):
            v = list(vec)
            v[g] = round_sig(v[g] * f)
            out.append(_canonical(v, partition))
    return out


def layer_search(
    evals: Mapping[str, Evaluation],
    scorer: Scorer,
    cfg: LayerConfig,
    start_alpha: float,
    num_layers: int | None,
    evaluated: frozenset[str] = frozenset(),
) -> SearchResult:
    """Replay the coordinate search from the uniform α ``start_alpha`` (whose scores must exist).

    ``evaluated``: candidates the uniform search already asked for; a move that lands on one
    (a vector with one α everywhere is that uniform α) costs no budget, since its scores exist.
    A partition that splits the layers as the one before it did (sixths and per layer on a
    six-layer model) is skipped: its candidates would be the same models under other names.
    """
    start = Candidate.uniform(start_alpha)
    rp = Replay(evals, scorer, cfg.budget, cfg.level, free=frozenset({start.name}) | evaluated)
    if not start_alpha > 0:
        rp.stop_reason = f"uniform search chose α = {start_alpha}: no extrapolation for the layer search to refine"
        return rp.result(start)
    if rp.request([start]) is None:
        return rp.result(start)
    inc, rnd = start, 0
    parts = [partition_name(cfg, p) for p in cfg.partitions]
    vec = [start_alpha] * len(partition_groups(parts[0], num_layers, cfg))
    rp.log(rnd, "start", start, "kept", None)
    prev = None
    for i, part in enumerate(parts):
        sets = layer_sets(part, num_layers, cfg)
        if i > 0:
            if _same_split(sets, layer_sets(prev, num_layers, cfg)):
                continue
            vec = _refine_vector(vec, prev, part, num_layers, cfg)
        prev = part
        while True:
            moves = [m for m in _moves(vec, part, cfg.step, sets) if m != inc]
            got = rp.request(moves)
            if got is None:
                return rp.result(inc)
            rnd += 1
            level = 1 - (1 - cfg.level) / max(len(got), 1) if cfg.bonferroni else cfg.level
            wins = [m for m in got if rp.beats(m, inc, level)]
            win = max(wins, key=lambda m: rp.diff(m, inc, level)[0]) if wins else None
            for m in got:
                rp.log(rnd, f"layers:{part}", m, "kept" if m == win else "rejected", inc, level)
            if rp.stop_reason:
                return rp.result(win or inc)
            if win is None:
                break
            inc = win
            vec = list(win.alphas) if not win.is_uniform else [win.alpha] * len(vec)
    rp.stop_reason = "no step beats the incumbent beyond noise at the finest partition"
    return rp.result(inc)
