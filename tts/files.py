"""Files written whole or not at all: beside their place first, then renamed into it.

The temporary file of ``NAME`` is ``.NAME.PID-XXXXXXXX.part``, PID the writer's process id.
A writer killed outright (SIGKILL, a power cut) cannot remove its own, so each new write of
``NAME`` first removes the ones whose writer is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tts.errors import AudioFileError

# Files the engine writes are readable by all, as open() would make them (mkstemp's 0600
# would survive the rename into place).
FILE_MODE = 0o644

# A temporary file untouched this long is stale even where its writer's pid says nothing: one
# made before pids were in the names, on another machine sharing the folder, or whose pid a
# new process has taken since. Every writer touches its file far more often than this.
STALE_AFTER_S = 3600.0


def temporary_beside(path: str | os.PathLike) -> Path:
    """An empty hidden file in the folder of ``path`` (``.NAME.PID-*.part``), so that a rename
    puts it in place at once; OSError where none can be made there. Stale temporary files
    of ``path`` go first."""
    path = Path(path)
    remove_stale_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def temporary_folder_beside(path: str | os.PathLike) -> Path:
    """An empty hidden folder beside ``path`` (``.NAME.PID-*.part``), where a folder is written
    whole before a rename puts it in place; stale temporary files and folders of ``path`` go
    first."""
    path = Path(path)
    remove_stale_partials(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".part", dir=path.parent))


def _partial_pattern(path: Path) -> re.Pattern[str]:
    # mkstemp's names: 8 characters of [a-z0-9_]; files from before pids were in the names
    # have no "PID-". Nothing else matches: another target's temporary file has a dot more.
    return re.compile(re.escape(f".{path.name}.") + r"(?:(\d+)-)?[a-z0-9_]{8}\.part")


def _running(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe way to ask; the age rule still applies
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (and folders) that writes of ``path`` left behind and no live
    process is writing: those whose pid is not running here, or untouched for
    ``STALE_AFTER_S``. Returns what it removed; what it cannot list or remove is left as it is."""
    path = Path(path)
    pattern = _partial_pattern(path)
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return removed
    for candidate in candidates:
        pid = pattern.fullmatch(candidate.name).group(1)
        try:
            old = time.time() - candidate.stat().st_mtime > STALE_AFTER_S
            if old or (pid is not None and not _running(int(pid))):
                shutil.rmtree(candidate) if candidate.is_dir() else candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write; renamed over ``path`` when the
    block ends without an error, removed when it raises. Readers see the old file or the new
    one, never half of one, and an interrupted block leaves no file behind. The file's mode
    is set after the block, since some writers (safetensors) recreate the file."""
    tmp = temporary_beside(path)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already once renamed into place


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` at ``path`` whole or not at all: beside it first, then renamed
    into place. AudioFileError (a ValueError) where it cannot be written."""
    path = Path(path)
    try:
        with replacing(path) as tmp:
            tmp.write_text(text, encoding="utf-8", newline="\n")
    except OSError as e:
        raise AudioFileError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def check_writable(path: str | os.PathLike) -> None:
    """AudioFileError unless a file can be written at ``path``: its folder exists, is not a
    file, lets us create a file, and ``path`` itself is not a folder."""
    path = Path(path)
    if not path.parent.is_dir():
        raise AudioFileError(f"output folder does not exist: {path.parent}")
    if path.is_dir():
        raise AudioFileError(f"output {path} is a folder")
    try:
        temporary_beside(path).unlink(missing_ok=True)
    except OSError as e:
        raise AudioFileError(f"cannot write {path}: {e.strerror or e}") from None
