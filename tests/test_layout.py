"""The package's layering: one installed namespace, what runs speech never reaches into
training, and the names of the engine's choices are written in one place."""

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("tts", "vocoder", "kernels", "demo")
FOLDERS = ("vocoder", "kernels", "train", "demo")  # installed inside tts


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
                 for name in _imports(path) if name == "tts.train" or name.startswith("tts.train.")]
    assert not offenders, offenders


def test_vocoder_and_backend_names_are_spelled_in_one_module():
    """Other modules take the names from tts.vocoder.choice (help texts and docstrings aside)."""
    spelled = []
    for package in (*RUNTIME, "train"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) > 1:
                    values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                    if {"numba", "cuda"} <= values or {"wavenet", "griffin-lim"} <= values:
                        spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert spelled and all(where.startswith("vocoder/choice.py:") for where in spelled), spelled


# What the pipeline (tts/) may import of the vocoder: the choice, the runtime that streams mel
# to audio, and the networks' own modules (a voice folder rebuilds them, in torch or numpy).
VOCODER_INTERFACE = {"tts.vocoder.choice", "tts.vocoder.runtime", "tts.vocoder.wavenet", "tts.vocoder.voicing",
                     "tts.vocoder.inference"}


def _from_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from module import names`` and ``import module`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_the_pipeline_asks_the_vocoder_only_through_its_interface():
    """vocoder/ is the vocoder's one home: tts/ and demo/ never reach the kernels or the
    vocoder's other insides."""
    offenders = []
    for package in ("tts", "demo"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for module, names in _from_imports(path):
                inside = module.startswith("tts.vocoder.") and module not in VOCODER_INTERFACE
                kernels = module == "tts.kernels" or module.startswith("tts.kernels.") or \
                    (module == "tts" and "kernels" in names)
                if inside or kernels:
                    offenders.append(f"{path.relative_to(ROOT)} imports {module} {names}")
    assert not offenders, offenders


def _defined(name: str) -> list[str]:
    return [f"{path.relative_to(ROOT)}" for package in (*RUNTIME, "train") for path in sorted((ROOT / package).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign)) and
            (getattr(node, "name", None) == name or
             any(isinstance(t, ast.Name) and t.id == name for t in getattr(node, "targets", [])))]


def test_each_vocoder_decision_is_made_in_one_place():
    """Which backend runs, which weight formats it takes, whether it can run here: decided in
    tts.vocoder.choice alone; the runtime and the kernels trust the resolved choice."""
    for name in ("VocoderChoice", "backend_status", "available_backends", "preferred_backends",
                 "BACKEND_WEIGHTS", "WEIGHT_FORMATS", "BACKENDS", "VOCODERS"):
        assert _defined(name) == ["vocoder/choice.py"], (name, _defined(name))
    # No layer asks which kernel it runs on, or which weight format goes with which kernel.
    asked = []
    for package in (*RUNTIME, "train"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() in ("vocoder/choice.py", "kernels/bench.py", "kernels/__init__.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and \
                        node.left.attr == "backend":
                    asked.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if isinstance(node, ast.Dict) and {"numba", "torch"} <= {getattr(k, "value", None) for k in node.keys}:
                    asked.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not asked, asked
