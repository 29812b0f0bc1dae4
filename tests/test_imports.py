"""The package's import graph, read from the modules' own source: no cycle, and the layers
``ops <- models <- deploy <- apis / tools`` imported one way only.

Every ``import`` statement counts, at module level and inside functions alike, so an import
moved into a function to dodge a cycle still shows up as one."""
import ast
import os.path as osp
from pathlib import Path

import pytest
from conftest import ROOT

#: layers, lowest first; a module belongs to the longest prefix listed, and may import only
#: modules of its own layer or a lower one
LAYERS = (
    ('base', ('micronet_mm', 'micronet_mm.errors', 'micronet_mm.fileio', 'micronet_mm.registry',
              'micronet_mm.checkpoint', 'micronet_mm.csrc', 'micronet_mm.engine',
              'micronet_mm.hooks', 'micronet_mm.resume', 'micronet_mm.datasets',
              'micronet_mm.zoo', 'micronet_mm.runtime', 'micronet_mm_post_import')),
    ('ops', ('micronet_mm.ops',)),
    ('models', ('micronet_mm.models',)),
    ('deploy', ('micronet_mm.deploy',)),
    ('apis / tools', ('micronet_mm.apis', 'micronet_mm.tools_common', 'micronet_mm.analysis',
                      'micronet_mm.converters', 'micronet_mm.converters_paddle', 'tools',
                      'demo', 'micronet_mm_startup')),
)


def module_files(root: str = ROOT) -> dict[str, Path]:
    """``{dotted name: file}`` of every Python module of the package, the tools and the demos."""
    base = Path(root)
    files = [base / 'micronet_mm_startup.py', base / 'micronet_mm_post_import.py']
    for folder in ('micronet_mm', 'tools', 'demo'):
        files += sorted((base / folder).rglob('*.py'))
    out = {}
    for path in files:
        parts = list(path.relative_to(base).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        out['.'.join(parts)] = path
    return out


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports anywhere in its source."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                source = '.'.join(parts + ([node.module] if node.module else []))
            else:
                source = node.module
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` mod
            targets = [f'{source}.{a.name}' if f'{source}.{a.name}' in modules else source
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and '.' in target:
                target = target.rpartition('.')[0]
            if target in modules and target != name:
                found.add(target)
    return found


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def layer(name: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + '.'):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f'{name} has no layer in LAYERS: add it'
    return best[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_is_read_from_the_source():
    """The reader sees what the code imports: relative, absolute, from-a-package and
    function-level imports."""
    graph = import_graph()
    assert 'micronet_mm.ops.blocks' in graph['micronet_mm.ops']  # from .blocks import ...
    assert 'micronet_mm.ops' in graph['micronet_mm.models.backbones.micronet']
    assert 'micronet_mm.ops.fused_shift_max' in graph['micronet_mm.deploy.backends.native']
    assert 'micronet_mm.models' in graph['micronet_mm.tools_common']  # inside a function
    assert 'tools.analysis.bench_models' in graph['tools.analysis.benchmark']


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_layers_import_one_way():
    wrong = [f'{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})'
             for a, targets in import_graph().items() for b in sorted(targets)
             if layer(b) > layer(a)]
    assert wrong == []


@pytest.mark.parametrize('source, problem', [
    ('def f():\n    from micronet_mm.deploy import switch_to_deploy\n', 'layer'),
    ('from micronet_mm.deploy.rewrites import native_block\n', 'layer'),
    ('def f():\n    from micronet_mm.ops import blocks\n', 'cycle'),
])
def test_checks_catch_a_hidden_import(tmp_path, source, problem):
    """A copy of the package with one bad import added to ops/shift_max.py fails the checks."""
    import shutil
    for folder in ('micronet_mm', 'tools', 'demo'):
        shutil.copytree(osp.join(ROOT, folder), tmp_path / folder,
                        ignore=shutil.ignore_patterns('*.so', '__pycache__', '.mim'))
    for name in ('micronet_mm_startup.py', 'micronet_mm_post_import.py'):
        shutil.copy(osp.join(ROOT, name), tmp_path)
    if problem == 'cycle':  # ops.blocks imports ops.shift_max: import back from it
        target = tmp_path / 'micronet_mm/ops/shift_max.py'
    else:
        target = tmp_path / 'micronet_mm/ops/stem.py'
    target.write_text(target.read_text() + '\n' + source)
    graph = import_graph(str(tmp_path))
    if problem == 'cycle':
        assert cycles(graph)
    else:
        assert any(layer(b) > layer(a) for a, targets in graph.items() for b in targets)
