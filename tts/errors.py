"""What a user of the engine can get wrong: the errors and the bounds every way in checks
against, in a module that imports nothing heavy, so that the command line can check its
arguments before torch is loaded."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

from tts.files import replacing, temporary_beside as _temporary_beside


class AudioFileError(ValueError):
    """An audio file that cannot be read or written."""


class SynthesisError(RuntimeError):
    """The engine cannot run as asked: no voice, an unusable device or vocoder backend."""


# Speaking rate, as a factor of the voice's own: the bounds every way in checks against.
MIN_RATE, MAX_RATE = 0.5, 2.0

# Seeds of the vocoder's random generator.
MAX_SEED = 2 ** 63 - 1


def check_seed(seed) -> None:
    """ValueError unless ``seed`` is an integer in [0, MAX_SEED]."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")


def temporary_beside(path: Path) -> str:
    """An empty temporary file in the folder of ``path`` (so that a rename puts it in place
    at once), or AudioFileError saying why none can be made there."""
    try:
        return str(_temporary_beside(path))
    except OSError as e:
        raise AudioFileError(f"cannot write {path}: {e.strerror or e}") from None


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
    """AudioFileError unless an audio file can be written at ``path``: its folder exists, is
    not a file, lets us create a file, and ``path`` itself is not a folder."""
    path = Path(path)
    if not path.parent.is_dir():
        raise AudioFileError(f"output folder does not exist: {path.parent}")
    if path.is_dir():
        raise AudioFileError(f"output {path} is a folder")
    Path(temporary_beside(path)).unlink(missing_ok=True)
