"""Files written whole or not at all: beside their place first, then renamed into it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Files the engine writes are readable by all, as open() would make them (mkstemp's 0600
# would survive the rename into place).
FILE_MODE = 0o644


def temporary_beside(path: str | os.PathLike) -> Path:
    """An empty hidden file in the folder of ``path`` (``.NAME.*.part``), so that a rename
    puts it in place at once; OSError where none can be made there."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(tmp)


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
