"""The README is a contract: its command-line and server examples run as written.

Each example line of the README's ``bash`` blocks that speaks (``synthesize ...``, the
server's ``curl``) runs here in a fresh folder, with the bundled voice, as a user would type
it. Installing (``pip``, ``apt-get``) is what CI itself does first; training needs a corpus
and hours, and is covered by the trainer's tests instead, but every module a README command
runs answers ``--help`` from a folder outside the repository, and the training commands'
settings are read and checked as written (``--print-config``).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent  # where the package's scripts (synthesize, tts-server) are


def example_lines() -> list[str]:
    """Every command of the README's bash blocks: continuations joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s{2,}#", line)[0].strip()
            if line:
                lines.append(line)
    return lines


SPEAKING = [line for line in example_lines() if re.match(r"(synthesize|echo .*\| synthesize)\b", line)
            and "--voice my-voice" not in line]  # my-voice: the training example's own voice


MODULES = sorted({m for line in example_lines() for m in re.findall(r"(?:python3? |torchrun .*?)-m (\S+)", line)}
                 - {"pytest"})
TRAINING = [line for line in example_lines() if re.match(r"(python -m|torchrun .*-m) tts\.train [a-z]", line)
            and " export " not in line and " adapt " not in line]
ADAPT = [line for line in example_lines() if line.startswith("python -m tts.train adapt ")]


def _env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_the_readme_has_the_examples_this_file_runs():
    assert len(SPEAKING) >= 5 and any("--subtitles" in line for line in SPEAKING)


def why_aplay_cannot_play() -> str | None:
    """Why an example that pipes into aplay cannot run here, or None if it can: aplay is
    missing, or it cannot open the default audio device (a server or container with aplay
    installed and no sound card). aplay opens the device before it reads, so empty input
    tries the device and plays nothing."""
    if shutil.which("aplay") is None:
        return "the example plays through aplay (alsa-utils), which is not installed"
    try:
        run = subprocess.run(["aplay", "-q", "-t", "raw", "-r", "16000", "-f", "S16_LE", "-c", "1"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "aplay did not open the default audio device within 30 s"
    if run.returncode != 0:
        said = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
        return f"the example plays through aplay, which cannot open an audio device here ({said})"
    return None


@pytest.mark.parametrize("line", SPEAKING)
def test_command_line_examples_run_as_written(line, tmp_path):
    if "aplay" in line and (why := why_aplay_cannot_play()):
        pytest.skip(why)
    (tmp_path / "chapter.txt").write_text("Chapter one.\n\nIt was a bright cold day in April.\n", encoding="utf-8")
    run = subprocess.run(line, shell=True, cwd=tmp_path, env=_env(), capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    for name in re.findall(r"(?:-o|--output|--timings|--subtitles) (\S+)", line):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.parametrize("aplay, reason", [
    (None, "which is not installed"),
    ("echo 'aplay: main:831: audio open error: No such file or directory' >&2; exit 1",
     "cannot open an audio device here (aplay: main:831: audio open error: No such file or directory)"),
    ("exit 0", None),
])
def test_the_aplay_example_runs_only_where_there_is_a_device_to_play_on(aplay, reason, tmp_path, monkeypatch):
    if aplay is not None:
        (tmp_path / "aplay").write_text(f"#!/bin/sh\n{aplay}\n")
        (tmp_path / "aplay").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))  # only the stand-in aplay, or none at all
    why = why_aplay_cannot_play()
    assert why == reason if reason is None else reason in why


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_server_example_runs_as_written(tmp_path):
    pytest.importorskip("fastapi", reason="the server extra is not installed")
    if shutil.which("curl") is None:
        pytest.skip("the example calls the server with curl, which is not installed")
    if not _port_free(8000):
        pytest.skip("port 8000, the example's, is taken on this machine")
    lines = example_lines()
    curl = next(line for line in lines if line.startswith("curl ") and "/v1/audio/speech" in line)
    server = subprocess.Popen(["tts-server"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while _port_free(8000):
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()[-2000:]
            time.sleep(0.5)
        run = subprocess.run(curl, shell=True, cwd=tmp_path, env=_env(), capture_output=True, timeout=300)
        assert run.returncode == 0, run.stderr.decode()
        assert (tmp_path / "hello.wav").read_bytes()[:4] == b"RIFF"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_readme_runs_the_engines_modules():
    assert {"tts.train", "tts.train.corpus", "tts.demo", "tts.evaluate"} <= set(MODULES) and len(TRAINING) >= 3


@pytest.mark.parametrize("module", MODULES)
def test_every_module_a_readme_command_runs_answers_help(module, tmp_path):
    """From a folder outside the repository: the module is the installed engine's."""
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and f"-m {module}" in run.stdout, (run.stdout + run.stderr)[-2000:]


@pytest.mark.parametrize("line", TRAINING)
def test_training_examples_settings_are_valid_as_written(line, tmp_path):
    """The command with torchrun's launcher dropped and --print-config added: its task, options
    and --set values are the trainer's (nothing trains, no data is read)."""
    args = line[line.index("-m tts.train ") + len("-m tts.train "):].split()
    run = subprocess.run([sys.executable, "-m", "tts.train", *args, "--print-config"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert '"task"' in run.stdout


def test_the_adapt_example_is_the_commands_as_written():
    """Its run (an hour) is tests/test_adapt.py's, on a tiny voice; here its options parse."""
    from tts.train.adapt import parser

    assert len(ADAPT) == 1
    args = parser().parse_args(ADAPT[0].split()[4:])
    assert args.data == "my-recordings/" and args.to == "my-voice" and args.minutes == 60.0
