"""The package's layering: what runs speech never reaches into training, and the names of
the engine's choices are written in one place."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("tts", "vocoder", "kernels", "demo")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_runtime_module_imports_the_trainer():
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for package in RUNTIME for path in sorted((ROOT / package).rglob("*.py"))
                 for name in _imports(path) if name == "train" or name.startswith("train.")]
    assert not offenders, offenders


def test_vocoder_and_backend_names_are_spelled_in_one_module():
    """Other modules take the names from tts.options (help texts and docstrings aside)."""
    spelled = []
    for package in (*RUNTIME, "train"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) > 1:
                    values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                    if {"numba", "cuda"} <= values or {"wavenet", "griffin-lim"} <= values:
                        spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert spelled and all(where.startswith("tts/options.py:") for where in spelled), spelled
