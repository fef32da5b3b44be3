"""Extrapolation schemes: which α applies to which tensor.

Why a separate, torch-free module: schemes come from the workflow config, and Snakemake should be
able to validate them (and name the offending key) at DAG-build time, long before any weights
are read. The engine in :mod:`workflow_scripts.extrapolate` only asks ``scheme.alpha_for(...)``.

Config format (see docs/ARCHITECTURE.md, "Extrapolation schemes"):

* a number: uniform α for every tensor;
* ``{"alpha": a}``: the same, written as a mapping;
* ``{"preset": "thirds", "alphas": [early, middle, late]}`` or ``{"preset": "thirds_5_10_15"}``:
  one α per third of the decoder layers; embeddings take the first α, final norm, lm_head and any
  other unmatched tensor the last α (overridable with explicit ``embed``/``norm``/``lm_head``/
  ``default`` keys);
* ``{"components": {prefix: scheme, ...}}``: one scheme per model component (vision tower,
  projector, language model), see :mod:`workflow_scripts.scheme_components`;
* ``{"groups": [...], "embed": a, "norm": a, "lm_head": a, "default": a}``: layer groups, each
  ``{"layers": [start, end], "by": "fraction"|"index", "alpha": a, "modules": ["mlp", ...]}``
  (half-open ranges; first matching group wins). ``default`` is required, so no tensor ever gets an
  α the user did not write (an implicit 1.0 for embeddings and head would be an unwritten α).

Fractions map to layers with the model's depth L: layer i is in ``[start, end)`` iff
``start <= (i + 0.5) / L < end``, so a fraction scheme works for any depth.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["layer", "embed", "norm", "lm_head", "other"]

PRESETS: dict[str, tuple[float, float, float] | None] = {
    "thirds": None,  # α per third given by the user
    "thirds_5_10_15": (5.0, 10.0, 15.0),  # the seed report's setting
}

# Decoder-layer index: ``model.layers.<i>.`` (Llama/Mistral/Qwen...), ``transformer.h.<i>.`` (GPT-2,
# Falcon), ``gpt_neox.layers.<i>.`` (Pythia), ``model.decoder.layers.<i>.`` (OPT).
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")
_EMBED_RE = re.compile(r"(?:^|\.)(?:embed_tokens|wte|embed_in|word_embeddings|embed_positions|wpe)\.")
_NORM_RE = re.compile(r"(?:^|\.)(?:norm|ln_f|final_layer_norm|final_layernorm)\.")
_HEAD_RE = re.compile(r"(?:^|\.)(?:lm_head|embed_out)\.")
VOCAB_KINDS = ("embed", "lm_head")
"""Kinds whose first dimension is the vocabulary and may grow when tokens are added."""


def layer_index(name: str) -> int | None:
    """Decoder-layer index encoded in a tensor name, or None for non-layer tensors."""
    m = _LAYER_RE.search(name)
    return int(m.group(1)) if m else None


def tensor_kind(name: str) -> tuple[Kind, int | None]:
    """Classify a tensor as decoder layer / embeddings / final norm / lm_head / other.

    The head is checked first because GPT-NeoX calls it ``embed_out``; layers before the final
    norm because every layer has its own ``*_norm`` tensors.
    """
    if _HEAD_RE.search(name):
        return "lm_head", None
    idx = layer_index(name)
    if idx is not None:
        return "layer", idx
    if _EMBED_RE.search(name):
        return "embed", None
    if _NORM_RE.search(name):
        return "norm", None
    return "other", None


def _alpha(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: α must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: α must be finite, got {value!r}")
    return value


@dataclass(frozen=True)
class LayerGroup:
    """A half-open range of decoder layers (by depth fraction or by index) sharing one α."""

    start: float
    end: float
    alpha: float
    by: Literal["fraction", "index"] = "fraction"
    modules: tuple[str, ...] = ()
    name: str = "group"

    def contains(self, layer: int, num_layers: int) -> bool:
        """Whether decoder layer ``layer`` (of ``num_layers``) falls in this group's range."""
        if self.by == "index":
            return self.start <= layer < self.end
        # (i + 0.5) / L in [start, end), multiplied out so no division rounding can flip a layer.
        pos = layer + 0.5
        return self.start * num_layers <= pos < self.end * num_layers

    def matches(self, name: str, layer: int, num_layers: int) -> bool:
        """Range match plus the optional substring filters on the tensor name."""
        if not self.contains(layer, num_layers):
            return False
        return not self.modules or any(m in name for m in self.modules)

    def describe(self) -> dict:
        start: float | int = int(self.start) if self.by == "index" else self.start
        end: float | int = int(self.end) if self.by == "index" else self.end
        return {
            "name": self.name,
            "layers": [start, end],
            "by": self.by,
            "alpha": self.alpha,
            "modules": list(self.modules),
        }


@dataclass(frozen=True)
class Scheme:
    """Which α each tensor gets. Build with :meth:`from_config`; ask with :meth:`alpha_for`."""

    groups: tuple[LayerGroup, ...]
    embed: float
    norm: float
    lm_head: float
    default: float
    uniform: float | None = None
    preset: str | None = None
    notes: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform_alpha(cls, alpha: float) -> Scheme:
        """Every tensor gets the same α (the paper's ExPO)."""
        a = _alpha(alpha, "uniform scheme")
        return cls(
            groups=(LayerGroup(0.0, 1.0, a, "fraction", (), "layers"),),
            embed=a,
            norm=a,
            lm_head=a,
            default=a,
            uniform=a,
        )

    @classmethod
    def from_config(cls, spec: Any) -> Scheme:
        """Parse a config value (number, or mapping as documented in the module docstring).

        Raises ValueError naming the offending key for anything malformed, so a bad config fails
        when the workflow starts rather than after hours of extrapolation.
        """
        from workflow_scripts.scheme_components import ComponentScheme

        if isinstance(spec, (Scheme, ComponentScheme)):
            return spec
        if isinstance(spec, str):
            try:
                spec = float(spec)
            except ValueError:
                raise ValueError(f"scheme must be a number or a mapping, got the string {spec!r}") from None
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls.uniform_alpha(spec)
        if not isinstance(spec, Mapping):
            raise ValueError(f"scheme must be a number or a mapping, got {type(spec).__name__}: {spec!r}")
        spec = dict(spec)
        if "components" in spec:  # per-component schemes (vision-language checkpoints)
            return ComponentScheme.from_config(spec)
        specials = {
            k: _alpha(spec[k], f"scheme key '{k}'") for k in ("embed", "norm", "lm_head", "default") if k in spec
        }
        if "preset" in spec:
            return cls._from_preset(spec, specials)
        if "groups" in spec:
            return cls._from_groups(spec, specials)
        if "alpha" in spec:
            unknown = set(spec) - {"alpha"}
            if unknown:
                raise ValueError(f"uniform scheme {{alpha: ...}} takes no other keys, got {sorted(unknown)}")
            return cls.uniform_alpha(_alpha(spec["alpha"], "scheme key 'alpha'"))
        raise ValueError(f"scheme mapping needs one of 'alpha', 'preset' or 'groups'; got keys {sorted(spec)}")

    @classmethod
    def _from_preset(cls, spec: dict, specials: dict[str, float]) -> Scheme:
        allowed = {"preset", "alphas", "embed", "norm", "lm_head", "default"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown scheme key(s) {sorted(unknown)} for a preset (allowed: {sorted(allowed)})")
        preset = spec["preset"]
        if preset not in PRESETS:
            raise ValueError(f"unknown scheme preset {preset!r} (known: {sorted(PRESETS)})")
        fixed = PRESETS[preset]
        if fixed is None:
            alphas = spec.get("alphas")
            if not isinstance(alphas, (list, tuple)) or len(alphas) != 3:
                raise ValueError(f"preset {preset!r} needs 'alphas: [early, middle, late]' (3 numbers), got {alphas!r}")
            alphas = tuple(_alpha(a, f"preset {preset!r} alphas[{i}]") for i, a in enumerate(alphas))
        else:
            if "alphas" in spec:
                raise ValueError(f"preset {preset!r} has fixed α {list(fixed)}; remove 'alphas' or use preset 'thirds'")
            alphas = fixed
        names = ("early", "middle", "late")
        bounds = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)
        groups = tuple(LayerGroup(bounds[i], bounds[i + 1], alphas[i], "fraction", (), names[i]) for i in range(3))
        notes = ("preset rule: embed takes the first third's α; norm, lm_head and unmatched tensors the last third's",)
        return cls(
            groups=groups,
            embed=specials.get("embed", alphas[0]),
            norm=specials.get("norm", alphas[2]),
            lm_head=specials.get("lm_head", alphas[2]),
            default=specials.get("default", alphas[2]),
            preset=preset,
            notes=notes,
        )

    @classmethod
    def _from_groups(cls, spec: dict, specials: dict[str, float]) -> Scheme:
        """A scheme from a ``groups`` spec; long because its checks are a flat sequence, each with its
        own one-line error, that reads best in order."""
        allowed = {"groups", "embed", "norm", "lm_head", "default"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown scheme key(s) {sorted(unknown)} (allowed: {sorted(allowed)})")
        if "default" not in specials:
            raise ValueError(
                "a 'groups' scheme needs an explicit 'default' α (used for embed/norm/lm_head when "
                "not given, and for tensors no group matches) — no α is ever assumed"
            )
        raw = spec["groups"]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise ValueError(f"scheme 'groups' must be a non-empty list, got {raw!r}")
        groups = []
        for n, g in enumerate(raw, 1):
            where = f"group {n}"
            if not isinstance(g, Mapping):
                raise ValueError(f"{where}: must be a mapping with 'layers' and 'alpha', got {g!r}")
            bad = set(g) - {"layers", "by", "alpha", "modules", "name"}
            if bad:
                raise ValueError(f"{where}: unknown key(s) {sorted(bad)}")
            if "alpha" not in g:
                raise ValueError(f"{where}: missing 'alpha'")
            alpha = _alpha(g["alpha"], where)
            by = g.get("by", "fraction")
            if by not in ("fraction", "index"):
                raise ValueError(f"{where}: 'by' must be 'fraction' or 'index', got {by!r}")
            layers = g.get("layers")
            if (
                not isinstance(layers, (list, tuple))
                or len(layers) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in layers)
            ):
                raise ValueError(f"{where}: 'layers' must be [start, end], got {layers!r}")
            start, end = float(layers[0]), float(layers[1])
            if by == "fraction":
                if not (0.0 <= start < end <= 1.0):
                    raise ValueError(f"{where}: fraction range {list(layers)} must satisfy 0 <= start < end <= 1")
            else:
                if any(float(x) != int(x) for x in layers):
                    raise ValueError(f"{where}: index range {list(layers)} must be integers (or set by: fraction)")
                if not (0 <= start < end):
                    raise ValueError(f"{where}: index range {list(layers)} must satisfy 0 <= start < end")
            modules = g.get("modules", ())
            if isinstance(modules, str):
                modules = (modules,)
            if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) and m for m in modules):
                raise ValueError(f"{where}: 'modules' must be a list of non-empty strings, got {modules!r}")
            name = g.get("name", f"group{n}")
            if not isinstance(name, str) or not name or name in ("embed", "norm", "lm_head", "default"):
                raise ValueError(f"{where}: invalid name {name!r}")
            groups.append(LayerGroup(start, end, alpha, by, tuple(modules), name))
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError(f"scheme group names must be unique, got {names}")
        d = specials["default"]
        return cls(
            groups=tuple(groups),
            embed=specials.get("embed", d),
            norm=specials.get("norm", d),
            lm_head=specials.get("lm_head", d),
            default=d,
            notes=("first matching group wins; unmatched layer tensors take 'default'",),
        )

    # ------------------------------------------------------------------ use
    def validate_for(self, num_layers: int) -> None:
        """Check index ranges against the model's depth (fractions fit any depth)."""
        if num_layers < 1:
            raise ValueError(f"model reports {num_layers} decoder layers")
        for n, g in enumerate(self.groups, 1):
            if g.by == "index" and g.end > num_layers:
                raise ValueError(
                    f"group {n} layers [{int(g.start)}, {int(g.end)}) is outside a model with {num_layers} layers"
                )

    def alpha_for(self, name: str, num_layers: int) -> tuple[float, str]:
        """(α, group name) for the tensor called ``name`` in a model with ``num_layers`` layers."""
        kind, idx = tensor_kind(name)
        if kind == "layer":
            for g in self.groups:
                if g.matches(name, idx, num_layers):
                    return g.alpha, g.name
            return self.default, "default"
        if kind == "other":
            return self.default, "default"
        return getattr(self, kind), kind

    def layer_alphas(self, num_layers: int) -> list[float | None]:
        """α of each layer when no module filter splits it (None where filters make it mixed)."""
        out: list[float | None] = []
        for i in range(num_layers):
            hits = [g for g in self.groups if g.contains(i, num_layers)]
            if not hits:
                out.append(self.default)
            elif not hits[0].modules:
                out.append(hits[0].alpha)
            else:
                out.append(None)
        return out

    def describe(self) -> dict:
        """JSON-able description for the manifest (enough to rebuild the scheme)."""
        return {
            "kind": "uniform" if self.uniform is not None else ("preset" if self.preset else "groups"),
            "alpha": self.uniform,
            "preset": self.preset,
            "groups": [g.describe() for g in self.groups],
            "embed": self.embed,
            "norm": self.norm,
            "lm_head": self.lm_head,
            "default": self.default,
            "notes": list(self.notes),
        }
