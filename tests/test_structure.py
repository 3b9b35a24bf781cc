"""The library's shape: no function in wmlib/ is longer than a screen (60 lines), so each reads in one sitting; a
longer one is split into named steps."""

import ast
from pathlib import Path

WMLIB = Path(__file__).resolve().parents[1] / "wmlib"
LONGEST = 60


def function_lengths(path: Path):
    """(qualified name, first line, lines) of every function and method in ``path``, decorators and docstring
    included."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                yield f"{prefix}{child.name}", first, child.end_lineno - first + 1
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    return list(walk(tree, ""))


def test_the_walk_measures_functions_methods_and_nested_ones(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "def a():\n    def b():\n        pass\n    return b\n\n\nclass C:\n    @staticmethod\n"
        "    def d():\n        x = 1\n        return x\n"
    )
    assert function_lengths(f) == [("a", 1, 4), ("a.b", 2, 2), ("C.d", 8, 4)]


def test_no_function_in_wmlib_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(WMLIB.parent)}:{name}:{n}"
        for path in sorted(WMLIB.rglob("*.py"))
        for name, _, n in function_lengths(path)
        if n > LONGEST
    ]
    assert not long, f"functions over {LONGEST} lines (file:function:lines), split them into named steps: {long}"
