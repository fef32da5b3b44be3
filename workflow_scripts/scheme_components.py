"""Component schemes: one α or layer scheme per model component (vision tower, projector, LLM).

Why: a vision-language checkpoint holds several stacks of layers. Counting vision-tower layers as
decoder layers gives vision layer i the LLM's layer-i α (or fails when the tower is deeper), and
the aligned model of a frozen-vision DPO run has Δ ≡ 0 outside the LLM anyway. So a VLM pair is
extrapolated only with a scheme that names each component, and each component's layer scheme
counts layers against that component's own depth. Torch-free, like :mod:`workflow_scripts.schemes`,
so Snakemake checks these at DAG time.

Config: ``{"components": {"vision_tower": 0, "multi_modal_projector": 0, "language_model":
{"preset": "thirds", "alphas": [1, 2, 4]}}}``. A key is a tensor-name prefix matched at the top
level (``vision_tower.*`` or ``model.vision_tower.*``; never the full path). The key ``default``
takes every component the mapping does not name; without it a tensor no key matches is an error.
A top-level ``lm_head.*`` belongs to ``language_model``. In a text-only checkpoint every tensor is
in one implicit component, ``language_model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflow_scripts.schemes import Scheme

LANGUAGE_MODEL = "language_model"
REST = "default"
DEPTH_CONFIG = {
    "language_model": "text_config",
    "vision_tower": "vision_config",
    "vision_model": "vision_config",
    "visual": "vision_config",
}
"""Which sub-config of config.json gives a component's depth (``num_hidden_layers``/``depth``)."""
MULTIMODAL_PREFIXES = ("vision_tower", "multi_modal_projector", "vision_model", "visual", "language_model")
"""Top-level tensor prefixes that mark a checkpoint as multi-component."""


def top_level(name: str) -> str:
    """A tensor name without the ``model.`` wrapper newer transformers saves put around components."""
    return name[len("model.") :] if name.startswith("model.") else name


def is_multimodal(config: dict, tensor_names) -> bool:
    """True for checkpoints with more than one component (a ``vision_config``, or component prefixes)."""
    if isinstance(config.get("vision_config"), dict):
        return True
    return any(top_level(n).split(".", 1)[0] in MULTIMODAL_PREFIXES for n in tensor_names)


def component_depth(config: dict, component: str) -> int | None:
    """Depth of ``component`` from config.json, or None when the config does not say."""
    sub = config.get(DEPTH_CONFIG.get(component, ""), None)
    if component == LANGUAGE_MODEL and not isinstance(sub, dict):
        sub = config  # text-only: the top-level config is the language model's
    if not isinstance(sub, dict):
        return None
    for key in ("num_hidden_layers", "n_layer", "num_layers", "depth"):
        if isinstance(sub.get(key), int) and not isinstance(sub.get(key), bool):
            return sub[key]
    return None


@dataclass(frozen=True)
class ComponentScheme:
    """Per-component schemes. Build with :meth:`from_config`; ask with :meth:`component_of`."""

    components: tuple[tuple[str, Scheme], ...]
    rest: Scheme | None = None

    @classmethod
    def from_config(cls, spec: Mapping) -> ComponentScheme:
        """Parse ``{"components": {prefix: scheme, ..., "default": scheme}}``; ValueError names the key."""
        unknown = set(spec) - {"components"}
        if unknown:
            raise ValueError(f"a component scheme takes only 'components', got also {sorted(unknown)}")
        raw = spec["components"]
        if not isinstance(raw, Mapping) or not raw:
            raise ValueError(f"scheme 'components' must be a non-empty mapping of prefix -> scheme, got {raw!r}")
        parts, rest = [], None
        for key, value in raw.items():
            if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
                raise ValueError(f"scheme components: invalid component prefix {key!r}")
            if isinstance(value, Mapping) and "components" in value:
                raise ValueError(f"scheme components.{key}: components cannot be nested")
            try:
                scheme = Scheme.from_config(value)
            except ValueError as exc:
                raise ValueError(f"scheme components.{key}: {exc}") from None
            if key == REST:
                rest = scheme
            else:
                parts.append((key, scheme))
        return cls(tuple(parts), rest)

    @property
    def names(self) -> list[str]:
        return [k for k, _ in self.components]

    def scheme_of(self, component: str) -> Scheme:
        """The scheme of a component (:meth:`component_of`'s answer)."""
        return dict(self.components).get(component) or self.rest

    def component_of(self, name: str, multimodal: bool = True) -> str:
        """The component key of tensor ``name``: the longest named prefix, else ``default``.

        Raises ValueError for a tensor no key matches when there is no ``default``.
        """
        if not multimodal:
            if LANGUAGE_MODEL in self.names:
                return LANGUAGE_MODEL
            if self.rest is not None:
                return REST
            raise ValueError(
                f"a text-only checkpoint has one component, {LANGUAGE_MODEL!r}; the scheme names {self.names}"
            )
        short = top_level(name)
        for key in sorted(self.names, key=len, reverse=True):
            for cand in (name, short):
                if cand == key or cand.startswith(key + "."):
                    return key
        if short.startswith("lm_head.") and LANGUAGE_MODEL in self.names:
            return LANGUAGE_MODEL
        if self.rest is not None:
            return REST
        raise ValueError(
            f"tensor {name!r} matches no component of the scheme (components: {self.names}); "
            "add its prefix or a 'default' entry"
        )

    @property
    def uniform(self) -> float | None:
        """The α when every component has the same uniform α, else None."""
        alphas = {s.uniform for _, s in self.components} | ({self.rest.uniform} if self.rest else set())
        return alphas.pop() if len(alphas) == 1 and None not in alphas else None

    def validate_for(self, depths: int | Mapping[str, int | None]) -> None:
        """Index ranges against each component's depth; an int is the language model's depth."""
        if not isinstance(depths, Mapping):
            depths = {LANGUAGE_MODEL: depths}
        for key, scheme in (*self.components, *(((REST, self.rest),) if self.rest else ())):
            depth = depths.get(key)
            if not depth:
                continue
            try:
                scheme.validate_for(depth)
            except ValueError as exc:
                raise ValueError(f"scheme components.{key}: {exc}") from None

    def describe(self) -> dict:
        """JSON-able description for the manifest (enough to rebuild the scheme)."""
        parts = {k: s.describe() for k, s in self.components}
        if self.rest is not None:
            parts[REST] = self.rest.describe()
        return {"kind": "components", "alpha": self.uniform, "components": parts}


def with_component_defaults(spec: Any, defaults: Mapping[str, float] | None) -> Any:
    """A pair's fixed per-component α (e.g. ``{vision_tower: 0, multi_modal_projector: 0}``) merged
    into a sweep value or a named scheme, so that the α sweep moves only the other components.

    The spec is returned unchanged when the pair sets no defaults, so text pairs' job parameters
    (and with them Snakemake's rerun decisions) stay as they are.
    """
    if not defaults:
        return spec
    if REST in defaults:
        raise ValueError("a pair's 'components' fixes named components; 'default' is what the sweep sets")
    if isinstance(spec, Mapping) and "components" in spec:
        return {"components": {**defaults, **spec["components"]}}
    return {"components": {**defaults, REST: spec}}
