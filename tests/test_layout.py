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


def test_every_import_of_the_engine_goes_through_tts():
    """vocoder/, kernels/, train/ and demo/ are tts.vocoder, ...: no module imports them by
    their folder's name, which an installed engine does not have."""
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for package in (*RUNTIME, "train", "tests") for path in sorted((ROOT / package).rglob("*.py"))
                 for name in _imports(path) if name.split(".")[0] in FOLDERS]
    assert not offenders, offenders


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: building in place would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("tts", *FOLDERS):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    return next(out.glob("*.whl"))


def test_the_wheel_installs_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"tts"}
    for folder in FOLDERS:
        assert f"tts/{folder}/__init__.py" in names
    assert "tts/train/presets/vocoder-cpu.json" in names and "tts/voices/default/config.json" in names


def test_the_installed_engine_speaks_beside_packages_named_like_its_folders(wheel, tmp_path):
    """Packages called kernels, vocoder, train and demo (other projects' names on PyPI) are
    installed beside the engine, first on the path; the engine, installed from its wheel, still
    synthesizes, and they still import as themselves."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    others = tmp_path / "others"
    for name in FOLDERS:
        (others / name).mkdir(parents=True)
        (others / name / "__init__.py").write_text(f"OWNER = 'another project: {name}'\n")
    script = ("import kernels, train, tts.kernels, tts.vocoder.wavenet, tts.train.config\n"
              "assert kernels.OWNER.endswith('kernels') and train.OWNER.endswith('train')\n"
              "assert tts.kernels.__file__.startswith(%r)\n"
              "from tts import Synthesizer\n"
              "audio = Synthesizer.load(vocoder='griffin-lim').synthesize('Two packages.')\n"
              "assert audio.size > 1600, audio.size\n" % str(site))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(others), str(site)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
