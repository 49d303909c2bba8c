"""The package's layers (WORKSPACE.md): a module imports only its own layer or
lower ones, no lm_jax import hides inside a function, and there is no cycle.

Read from the source with `ast`, so it runs without importing anything.
"""
import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lm_jax")

# Module (or package prefix) -> layer, lowest first. A module not listed fails the test:
# a new module takes its place in this table and in WORKSPACE.md's map.
LAYERS = {
    "lm_jax.errors": 0, "lm_jax.cli": 0, "lm_jax.config": 0, "lm_jax.parallel": 0,
    "lm_jax.checkpoint": 0, "lm_jax.metrics": 0, "lm_jax.lock": 0, "lm_jax.paths": 0,
    "lm_jax.models": 1, "lm_jax.data": 1, "lm_jax.objectives": 1, "lm_jax.interop": 1,
    "lm_jax.evaluation": 2,
    "lm_jax.families": 3,
    "lm_jax.state": 4,
    "lm_jax.workdir": 5,
    "lm_jax.init_from": 6,
    "lm_jax.train": 7, "lm_jax.seeds": 7, "lm_jax.inference": 7,
    "lm_jax.main": 8, "lm_jax.export": 8, "lm_jax.generate": 8, "lm_jax.validate": 8,
    "lm_jax.bench": 8, "lm_jax.bench_peer": 8, "lm_jax.bench_inference": 8, "lm_jax.prepare": 8,
    "lm_jax": 8,
}
# Siblings of one layer that must stay apart: (importer prefix, imported prefix).
APART = [("lm_jax.train", "lm_jax.inference"), ("lm_jax.inference", "lm_jax.train"),
         ("lm_jax.inference", "lm_jax.seeds"), ("lm_jax.export", "lm_jax.train"),
         ("lm_jax.export", "lm_jax.seeds")]


def _modules():
  """{dotted module name: path} of every module of the package."""
  found = {}
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if not name.endswith(".py"):
        continue
      rel = os.path.relpath(os.path.join(root, name), os.path.dirname(PACKAGE))[:-3]
      parts = rel.split(os.sep)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      found[".".join(parts)] = os.path.join(root, name)
  return found


def _imports(path, modules):
  """[(imported module, line, inside a function)] of one file's lm_jax imports."""
  out = []

  def visit(node, in_function):
    for child in ast.iter_child_nodes(node):
      nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda))
      names = []
      if isinstance(child, ast.Import):
        names = [a.name for a in child.names]
      elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
        # `from lm_jax.data import packing` imports the module lm_jax.data.packing.
        names = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in modules
                 else child.module for a in child.names]
      out.extend((n, child.lineno, in_function) for n in names
                 if n == "lm_jax" or n.startswith("lm_jax."))
      visit(child, nested)

  with open(path) as f:
    visit(ast.parse(f.read()), False)
  return out


def _layer(module):
  matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
  assert matches, f"{module} has no layer in tests/test_layers.py's LAYERS (and WORKSPACE.md)"
  return LAYERS[max(matches, key=len)]


def _graph():
  modules = _modules()
  return modules, {m: _imports(p, modules) for m, p in modules.items()}


def test_every_import_points_down_and_none_hides_in_a_function():
  _, graph = _graph()
  problems = []
  for module, imports in graph.items():
    for imported, line, in_function in imports:
      where = f"{module} line {line} imports {imported}"
      if in_function:
        problems.append(f"{where} inside a function")
      if _layer(imported) > _layer(module):
        problems.append(f"{where}, a higher layer ({_layer(imported)} > {_layer(module)})")
      for a, b in APART:
        if (module == a or module.startswith(a + ".")) and (imported == b or
                                                             imported.startswith(b + ".")):
          problems.append(f"{where}, which it must not")
  assert not problems, "\n".join(problems)


def test_no_import_cycle():
  modules, graph = _graph()
  edges = {m: sorted({i for i, _, _ in imports if i in modules and i != m})
           for m, imports in graph.items()}
  # A package's __init__ imports its own submodules; those importing a sibling
  # through the package name is not a cycle of code, so drop submodule -> parent edges.
  edges = {m: [i for i in targets if not m.startswith(i + ".")] for m, targets in edges.items()}
  state, stack = {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for n in edges[m]:
      if state.get(n) == "open":
        raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
      if n not in state:
        visit(n)
    stack.pop()
    state[m] = "done"

  for m in sorted(edges):
    if m not in state:
      visit(m)


def test_the_checker_sees_imports_inside_functions(tmp_path):
  """The rule cannot erode silently: a nested import is found."""
  path = tmp_path / "m.py"
  path.write_text("import os\n\ndef f():\n  from lm_jax import train\n  return train\n")
  assert _imports(str(path), {"lm_jax.train": ""}) == [("lm_jax.train", 4, True)]
