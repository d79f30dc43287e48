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


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write; renamed over ``path`` when the
    block ends without an error, removed when it raises. Readers see the old file or the new
    one, never half of one, and an interrupted block leaves no file behind. The file's mode
    is set after the block, since some writers (safetensors) recreate the file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already once renamed into place
