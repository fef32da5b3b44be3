"""Which scheme, component and depth decide each tensor's α.

Why a step of its own: in a text-only checkpoint every tensor is measured against the one decoder
depth of config.json; in a vision-language checkpoint the vision tower, the projector and the
language model are separate stacks, so each tensor first finds its component (by top-level name
prefix) and then its layer counts against that component's depth. Guessing here would be silently
wrong (vision layer i taking the LLM's layer-i α), so a VLM without a component scheme is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflow_scripts.extrapolate.reader import Checkpoint, num_layers_of
from workflow_scripts.scheme_components import (
    LANGUAGE_MODEL,
    REST,
    ComponentScheme,
    component_depth,
    is_multimodal,
    top_level,
)
from workflow_scripts.schemes import Scheme, layer_index


@dataclass(frozen=True)
class Placement:
    """A tensor's scheme, the depth its layer index counts against, and its component."""

    scheme: Scheme
    depth: int
    component: str | None  # None: a text-only model under a plain scheme (the manifest's old layout)


def natural_component(name: str, multimodal: bool) -> str:
    """The component a tensor belongs to when no scheme key names it: its top-level prefix."""
    if not multimodal:
        return LANGUAGE_MODEL
    first = top_level(name).split(".", 1)[0]
    return LANGUAGE_MODEL if first == "lm_head" else first


def place_tensors(
    aligned: Checkpoint, names: list[str], scheme: Scheme | ComponentScheme
) -> tuple[dict[str, Placement], dict[str, int] | None]:
    """(placement of every tensor, depth of every component or None for a plain text-only plan)."""
    multimodal = is_multimodal(aligned.config, aligned.tensors)
    if isinstance(scheme, Scheme):
        if multimodal:
            found = sorted({natural_component(n, True) for n in names})
            raise ValueError(
                f"aligned checkpoint {aligned.path} is a multi-component (vision-language) model with "
                f"components {found}; a plain scheme would count vision layers as decoder layers. Give a "
                "component scheme, e.g. {components: {vision_tower: 0, multi_modal_projector: 0, "
                "language_model: <α or scheme>}}, or set the pair's `components:` (fixed α per component) "
                "so the α sweep moves only the rest"
            )
        depth = num_layers_of(aligned.config, aligned.path)
        scheme.validate_for(depth)
        return {n: Placement(scheme, depth, None) for n in names}, None
    keys = {n: scheme.component_of(n, multimodal) for n in names}
    unused = [k for k in scheme.names if k not in set(keys.values())]
    if unused:
        raise ValueError(
            f"scheme component {unused[0]!r} matches no tensor of aligned checkpoint {aligned.path} "
            f"(its components: {sorted({natural_component(n, multimodal) for n in names})})"
        )
    comp = {n: k if k != REST else natural_component(n, multimodal) for n, k in keys.items()}
    key_of = {comp[n]: k for n, k in keys.items()}  # one key per component: a component is a key or REST's
    depths = {c: _depth(aligned, c, [n for n in names if comp[n] == c], scheme.scheme_of(k)) for c, k in key_of.items()}
    for n, k in keys.items():
        if depths[comp[n]]:
            try:
                scheme.scheme_of(k).validate_for(depths[comp[n]])
            except ValueError as exc:
                raise ValueError(f"scheme components.{k} (component {comp[n]}): {exc}") from None
    return {n: Placement(scheme.scheme_of(keys[n]), depths[comp[n]], comp[n]) for n in names}, depths


def _depth(aligned: Checkpoint, component: str, names: list[str], scheme: Scheme) -> int:
    """Depth of one component: config.json's (text_config / vision_config), 0 when it has no layers."""
    depth = component_depth(aligned.config, top_level(component).split(".", 1)[0])
    if depth is not None:
        return depth
    layers = [i for i in (layer_index(n) for n in names) if i is not None]
    if not layers:
        return 0
    if scheme.uniform is not None:
        return max(layers) + 1  # a uniform α does not depend on the depth
    raise ValueError(
        f"component {component!r} of {aligned.path} has layers but config.json gives no depth for it; "
        "use a uniform α for it"
    )
