"""The exercise cell tags, and their lint: which cell is an exercise, which its solution (the course kit).

Every exercise is one code cell holding a stub (``raise NotImplementedError``) and a ``check()``
call (:func:`recnb.exercises.check`); its reference solution is a later code cell of the same notebook that
calls ``check(..., strict=True)``. Both carry cell tags (``metadata.tags``, which nbconvert's
``TagRemovePreprocessor`` reads):

* the stub: ``exercise`` and ``exercise:<id>``,
* the solution: ``solution`` and ``solution:<id>``,

where ``<id>`` is ``nbNN-<name>``: the notebook's two-digit number and a short kebab-case name
(``nb01-head-share``). The id is what ties an exercise to its solution and what the grading report
(:mod:`recnb.grading`) names; it never changes once published. :func:`lint` enforces the scheme (the test
suite runs it on every notebook): every stub is tagged, every exercise has exactly one solution after it and
vice versa, and no other cell needs a name that only a solution cell defines (the student edition,
``make student``, drops the solution cells).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

EXERCISE_TAG, SOLUTION_TAG = "exercise", "solution"
ID_PATTERN = re.compile(r"nb(\d{2})-[a-z0-9]+(?:-[a-z0-9]+)*")


def cell_role(cell) -> tuple[str | None, str | None]:
    """``("exercise" | "solution" | None, id | None)`` from a cell's tags (malformed tags: see :func:`lint`)."""
    tags = cell.get("metadata", {}).get("tags", [])
    for role in (EXERCISE_TAG, SOLUTION_TAG):
        ids = [t.split(":", 1)[1] for t in tags if t.startswith(role + ":")]
        if role in tags or ids:
            return role, (ids[0] if ids else None)
    return None, None


def tagged_cells(nb, role: str) -> dict[str, int]:
    """``{id: cell index}`` of the cells tagged ``role`` (``"exercise"`` or ``"solution"``), in notebook order."""
    found: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        r, ident = cell_role(cell)
        if r == role and ident and ident not in found:
            found[ident] = i
    return found


def _python(source: str) -> str:
    """A cell's source as plain Python (IPython magics and shell escapes turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except ImportError:  # pragma: no cover - IPython comes with every kernel
        return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _parse(source: str):
    try:
        return ast.parse(_python(source))
    except SyntaxError:
        return None


def _check_calls(tree) -> list:
    """The ``check(...)`` / ``exercises.check(...)`` calls in a parsed cell."""
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "check") or (isinstance(f, ast.Attribute) and f.attr == "check"):
                calls.append(node)
    return calls


def _is_strict(call) -> bool:
    return any(k.arg == "strict" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def _raises_not_implemented(tree) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def module_names(tree) -> tuple[set, set]:
    """(names a cell binds at module level, names it reads anywhere) -- a conservative static view."""
    stored, loaded = set(), set()
    scopes = (
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.ClassDef,
        ast.Lambda,
        ast.ListComp,
        ast.SetComp,
        ast.DictComp,
        ast.GeneratorExp,
    )

    def visit(node, top):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and top:
            stored.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and top:
            stored.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loaded.add(node.id)
            elif top:
                stored.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child, top and not isinstance(node, scopes))

    visit(tree, True)
    return stored, loaded


def lint(nb, name: str | None = None, *, dependencies: bool = True) -> list[str]:
    """Problems with a notebook's exercise and solution tags (empty: the scheme holds).

    ``name`` is the notebook's file name; when given, every id's ``nbNN`` must match its number.
    With ``dependencies`` (the default) it also lists the cells that use a name only a solution cell
    defines (a static check: the student edition would stop there).
    """
    number = re.match(r"(\d{2})_", Path(name).name) if name else None
    prefix = f"{name}: cell" if name else "cell"
    problems: list[str] = []
    exercises: dict[str, int] = {}
    solutions: dict[str, int] = {}
    trees = {}
    for i, cell in enumerate(nb.cells):
        trees[i] = _parse(cell.source) if cell.cell_type == "code" else None
        tables = {EXERCISE_TAG: exercises, SOLUTION_TAG: solutions}
        problems += _cell_problems(i, cell, trees[i], f"{prefix} {i}", number, tables)
    problems += _pairing_problems(exercises, solutions, prefix)
    if dependencies:
        problems += _solution_only_names(trees, set(solutions.values()), prefix)
    return problems


def _cell_problems(i: int, cell, tree, at: str, number, tables: dict) -> list[str]:
    """What is wrong with one cell's tags; a well-tagged cell is registered in ``tables[role]`` (id -> index)."""
    tags = cell.get("metadata", {}).get("tags", [])
    roles = [r for r in (EXERCISE_TAG, SOLUTION_TAG) if r in tags or any(t.startswith(r + ":") for t in tags)]
    calls = _check_calls(tree) if tree is not None else []
    stub = tree is not None and _raises_not_implemented(tree)
    strict = any(_is_strict(c) for c in calls)
    if len(roles) > 1:
        return [f"{at} is tagged both exercise and solution"]
    if not roles:
        return _untagged_problems(at, bool(calls), stub, strict)
    role = roles[0]
    ids = [t.split(":", 1)[1] for t in tags if t.startswith(role + ":")]
    if role not in tags or len(ids) != 1:
        return [f"{at} needs exactly the tags '{role}' and one '{role}:<id>', has {tags}"]
    ident = ids[0]
    problems = _id_problems(at, ident, number)
    if cell.cell_type != "code":
        return [*problems, f"{at} is tagged {role} but is not a code cell"]
    table = tables[role]
    if ident in table:
        return [*problems, f"{at}: {role} id {ident!r} already used by cell {table[ident]}"]
    table[ident] = i
    if role == EXERCISE_TAG and not (stub and any(not _is_strict(c) for c in calls)):
        problems.append(f"{at}: an exercise cell holds a stub (raise NotImplementedError) and calls check()")
    if role == SOLUTION_TAG:
        if not strict:
            problems.append(f"{at}: a solution cell checks the reference with check(..., strict=True)")
        if not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
            problems.append(f"{at}: a solution cell is collapsed (metadata jupyter.source_hidden: true)")
    return problems


def _untagged_problems(at: str, calls: bool, stub: bool, strict: bool) -> list[str]:
    """An untagged cell that looks like an exercise (a checked stub) or a solution (a strict check)."""
    if calls and stub:
        return [f"{at} is an exercise (a stub checked with check()) without the tags 'exercise' and 'exercise:<id>'"]
    if strict:
        return [
            f"{at} checks a reference solution (check(..., strict=True)) without the tags "
            f"'solution' and 'solution:<id>'"
        ]
    return []


def _id_problems(at: str, ident: str, number) -> list[str]:
    """An id that is not ``nbNN-kebab-case``, or whose ``NN`` is not the notebook's number."""
    m = ID_PATTERN.fullmatch(ident)
    if not m:
        return [f"{at}: id {ident!r} is not nbNN-kebab-case-name"]
    if number and m.group(1) != number.group(1):
        return [f"{at}: id {ident!r} does not carry this notebook's number nb{number.group(1)}"]
    return []


def _pairing_problems(exercises: dict, solutions: dict, prefix: str) -> list[str]:
    """Every exercise has its solution after it, and every solution its exercise."""
    problems = []
    for ident, i in exercises.items():
        if ident not in solutions:
            problems.append(
                f"{prefix} {i}: exercise {ident!r} has no solution cell (tags 'solution', 'solution:{ident}')"
            )
        elif solutions[ident] < i:
            problems.append(
                f"{prefix} {solutions[ident]}: the solution of {ident!r} comes before its exercise (cell {i})"
            )
    for ident, i in solutions.items():
        if ident not in exercises:
            problems.append(
                f"{prefix} {i}: solution {ident!r} has no exercise cell (tags 'exercise', 'exercise:{ident}')"
            )
    return problems


def _solution_only_names(trees: dict, solution_cells: set, prefix: str) -> list[str]:
    """The student edition drops the solution cells: no other cell may need a name that only they define."""
    only_solutions, elsewhere = set(), set()
    for i, tree in trees.items():
        if tree is not None:
            (only_solutions if i in solution_cells else elsewhere).update(module_names(tree)[0])
    only_solutions -= elsewhere
    problems = []
    for i, tree in trees.items():
        if tree is None or i in solution_cells:
            continue
        needed = sorted(module_names(tree)[1] & only_solutions)
        if needed:
            problems.append(
                f"{prefix} {i} uses {', '.join(needed)}, which only a solution cell defines: "
                f"the student edition (no solutions) would fail here"
            )
    return problems
