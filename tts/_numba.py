"""numba, with its cache of compiled code in the user's cache folder.

By default numba caches next to the source, in the installed package's ``__pycache__``:
impossible where site-packages is read-only, and left behind by ``pip uninstall`` as empty
folders that then shadow the reinstalled package. Every module of the engine that compiles
with ``cache=True`` imports numba from here, so the cache goes to
``$XDG_CACHE_HOME/tts-engine/VERSION/numba`` (``~/.cache`` by default) unless NUMBA_CACHE_DIR
says where. One folder per version of the engine: numba keys its cache by the source file and
its time stamp, not by the module's name, so code cached before a module moved would
otherwise be loaded under a name that no longer imports.
"""

import os
from pathlib import Path

import numba

from tts import __version__

if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                 / "tts-engine" / __version__ / "numba")

__all__ = ["numba"]
