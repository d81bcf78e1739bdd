"""The package's layers point one way (issue 14 item 3).

Every module of ``asrcomp/`` has a rank; a module may import modules of its own rank or a
lower one, never a higher one, at module level or inside a function:

====  ========  ==========================================================================
rank  layer     modules
====  ========  ==========================================================================
0     data      utils, datadir, features, perturb, sphere: Kaldi data dirs, audio, fbank
1     lang      lang, lm, graph; dataset (CTC cuts: features paired with token ids, so it
                needs the lang dir)
2     nnet      ``asrcomp.nnet.*``: every layer type a model can contain, the factorised
                ones (SVD, TT, Tucker, CP) and the ``arch["factorized"]`` rebuild included
3     run       train, decode, decode_dir, score, modeldir, guards, bootstrap: training,
                decoding and scoring one model dir
4     compress  ``asrcomp.compress.*``: decompositions, pruning, quantisation, coding,
                distillation, pack
5     app       cli, onnx_cli, onnx_export, sherpa, compare, groups, the package itself:
                commands, deployment and the tables across model dirs
====  ========  ==========================================================================

Also: no function-level ``asrcomp`` import (a lazy import dodging a cycle) unless its line says
why, ``# lazy: <why>``; ``cli.py`` and ``onnx_cli.py`` import each subcommand's modules inside its
handler (start-up time: ``asrcomp --help`` loads no torch), said once per file. And the
module-level imports between asrcomp modules form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "asrcomp"

LAYERS = ["data", "lang", "nnet", "run", "compress", "app"]
RANK = {  # module -> layer; a package prefix covers every module under it
    "asrcomp.utils": "data", "asrcomp.datadir": "data", "asrcomp.features": "data", "asrcomp.perturb": "data",
    "asrcomp.sphere": "data", "asrcomp.subset": "data",
    "asrcomp.lang": "lang", "asrcomp.lm": "lang", "asrcomp.graph": "lang", "asrcomp.dataset": "lang",
    "asrcomp.nnet": "nnet",
    "asrcomp.train": "run", "asrcomp.decode": "run", "asrcomp.decode_dir": "run", "asrcomp.score": "run",
    "asrcomp.modeldir": "run", "asrcomp.guards": "run", "asrcomp.bootstrap": "run",
    "asrcomp.compress": "compress",
    "asrcomp": "app", "asrcomp.cli": "app", "asrcomp.onnx_cli": "app", "asrcomp.onnx_export": "app",
    "asrcomp.sherpa": "app", "asrcomp.compare": "app", "asrcomp.groups": "app",
}
PACKAGES = ("asrcomp.nnet", "asrcomp.compress")  # ranked as a whole
LAZY_OK = {"asrcomp.cli", "asrcomp.onnx_cli"}  # command modules: imports per subcommand keep start-up fast


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


MODULES = modules()


def rank(mod: str, unplaced: int | None = None) -> int:
    """The layer index of ``mod``; for a module the map does not place, ``unplaced`` (KeyError if None)."""
    for pkg in PACKAGES:
        if mod == pkg or mod.startswith(pkg + "."):
            return LAYERS.index(RANK[pkg])
    if mod not in RANK and unplaced is not None:
        return unplaced
    return LAYERS.index(RANK[mod])


def _resolve(name: str) -> str:
    """The asrcomp module ``name`` stands for: itself, or its longest prefix that is a module."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def imports(mod: str) -> list[tuple[str, ast.stmt, bool]]:
    """``(target module, node, inside a function)`` for each asrcomp module an import of ``mod`` names."""
    seen = {}
    for target, node, in_func in _imports(mod):
        seen.setdefault((target, id(node)), (target, node, in_func))
    return list(seen.values())


def _imports(mod: str):
    path = MODULES[mod]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"

    def walk(node, in_func):
        for child in ast.iter_child_nodes(node):
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name == "asrcomp" or a.name.startswith("asrcomp."):
                        yield _resolve(a.name), child, in_func
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package of this module
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[:len(pkg) - child.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                if base == "asrcomp" or base.startswith("asrcomp."):
                    for a in child.names:  # "from pkg import module" imports the module
                        full = f"{base}.{a.name}"
                        yield (full if full in MODULES else _resolve(base)), child, in_func
            yield from walk(child, func)

    yield from walk(tree, False)


def test_every_module_has_a_layer():
    missing = []
    for m in MODULES:
        try:
            rank(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"give these modules a layer in tests/test_layering.py RANK: {missing}"


def test_no_module_imports_a_higher_layer():
    bad = []
    for m in MODULES:
        for target, node, _ in imports(m):
            if rank(target, -1) > rank(m, len(LAYERS)):
                bad.append(f"{MODULES[m].relative_to(PKG.parent)}:{node.lineno}: {m} ({LAYERS[rank(m)]}) imports "
                           f"{target} ({LAYERS[rank(target)]})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_function_level_import_without_a_reason():
    bad = []
    for m in MODULES:
        lines = MODULES[m].read_text(encoding="utf-8").splitlines()
        if m in LAZY_OK:  # one note for the whole module will do
            if any(in_func for _, _, in_func in imports(m)) and not any("# lazy:" in ln for ln in lines):
                bad.append(f"{MODULES[m].relative_to(PKG.parent)}: say once why its imports are lazy ('# lazy: ...')")
            continue
        for target, node, in_func in imports(m):
            if in_func and not any("# lazy:" in lines[i - 1] for i in range(node.lineno, node.end_lineno + 1)):
                bad.append(f"{MODULES[m].relative_to(PKG.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, ("function-level asrcomp imports (move the code to its layer instead, or say "
                     "'# lazy: <why>'):\n" + "\n".join(bad))


def test_module_level_imports_form_no_cycle():
    graph = {m: sorted({t for t, _, in_func in imports(m) if not in_func and t != m}) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m, path):
        state[m] = 1
        for t in graph.get(m, []):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_the_map_names_only_existing_modules():
    stale = [m for m in RANK if m not in MODULES]
    assert not stale, f"RANK names modules that are gone: {stale}"
