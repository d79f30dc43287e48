"""Files written whole or not at all (tts.files), and no temporary file left behind."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from tts.errors import AudioFileError
from tts.files import FILE_MODE, STALE_AFTER_S, check_writable, replacing, write_text_atomic


def test_a_finished_block_replaces_the_file_readable_by_all(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with replacing(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"  # readers see the old file until the block ends
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_block_keeps_the_old_file_and_leaves_nothing(tmp_path, error):
    path = tmp_path / "weights.safetensors"
    path.write_text("old")
    with pytest.raises(type(error)):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise error
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _aged(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_write_killed_outright_leaves_nothing_after_the_next_write(tmp_path):
    path = tmp_path / "long.wav"
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom tts.files import replacing\n"
         "with replacing(sys.argv[1]) as tmp:\n"
         "    tmp.write_text('half'); print(tmp.name, flush=True); time.sleep(60)\n", str(path)],
        stdout=subprocess.PIPE, text=True)
    partial = tmp_path / writer.stdout.readline().strip()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert partial.exists()  # nothing runs in a process killed outright
    write_text_atomic(path, "whole")
    assert path.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]


def test_only_stale_partials_of_the_same_target_are_removed(tmp_path):
    path = tmp_path / "long.wav"
    dead, live = _dead_pid(), os.getpid()
    stale = [tmp_path / f".long.wav.{dead}-abcd_123.part",
             tmp_path / ".long.wav.x1y2z3w4.part",  # no pid: by its age
             tmp_path / f".long.wav.{live}-oldlive1.part"]  # the pid taken by a new process
    kept = [tmp_path / f".long.wav.{live}-inflight.part",  # a live writer's
            tmp_path / ".long.wav.newer123.part",  # no pid, but recent
            tmp_path / f".long.wav.5.{dead}-abcd_123.part",  # the target long.wav.5's
            tmp_path / f".short.wav.{dead}-abcd_123.part",
            tmp_path / f".long.wav.{dead}-abcd_123.part.bak"]
    for p in stale + kept:
        p.write_text("partial")
    for p in stale[1:]:
        _aged(p, STALE_AFTER_S + 60)
    write_text_atomic(path, "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept + [path])


def test_check_writable_says_why_in_one_line(tmp_path):
    with pytest.raises(AudioFileError, match="output folder does not exist"):
        check_writable(tmp_path / "nowhere" / "out.wav")
    with pytest.raises(AudioFileError, match="is a folder"):
        check_writable(tmp_path)
    check_writable(tmp_path / "out.wav")
    assert list(tmp_path.iterdir()) == []
