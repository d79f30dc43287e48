"""How every command of the engine runs: one line per error, exit codes by name.

    def main(argv=None) -> int:
        return run_command("synthesize", lambda: _main(argv), usage=(AudioFileError,))

A command's body raises; `run_command` turns what it raises into one line on stderr and the
exit code for it, so no user ever sees a traceback:

    EXIT_OK           0    done (also when the reader of standard output went away)
    EXIT_FAILURE      1    the command cannot run as asked (no voice, no GPU, a missing extra)
    EXIT_USAGE        2    bad usage or input: fixing the command line fixes it
    128 + signal           stopped by SIGTERM (143) or SIGHUP (129), after unwinding
    EXIT_INTERRUPTED  130  Ctrl-C

SIGTERM and SIGHUP unwind like Ctrl-C (``Terminated``), so partial output files are removed
on the way out. Light on purpose: --help and usage errors answer before torch is imported.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad usage or input, found by the command itself or by its argument parser."""


class MissingExtraError(RuntimeError):
    """An optional part of the engine whose packages are not installed; says which extra."""


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived: unwind (removing partial output files) and exit."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class OneLineParser(argparse.ArgumentParser):
    """Usage errors raise UsageError, to be printed as one line (argparse would print the
    whole usage first and exit)."""

    def error(self, message: str):
        raise UsageError(message)


def check_voice_folder(path) -> None:
    """UsageError unless ``path`` (a --voice) is a folder with a voice's config.json: a wrong
    path is bad input, which fixing the command line fixes. A voice that is there but damaged
    is found when it loads (exit 1)."""
    from pathlib import Path

    from tts.voice import CONFIG_FILE

    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"voice folder not found: {path}")
    if not (path / CONFIG_FILE).is_file():
        raise UsageError(f"voice folder {path} has no {CONFIG_FILE}")


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _prefix() -> str:
    """"[rank N] " inside a distributed run, so that each process's line says whose it is."""
    return f"[rank {os.environ.get('RANK', 0)}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""


def run_command(prog: str, body: Callable[[], int], usage: tuple[type[BaseException], ...] = (),
                failure: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's ``body`` and return its exit code: UsageError and the ``usage``
    exceptions give EXIT_USAGE; SynthesisError, MissingExtraError and the ``failure``
    exceptions give EXIT_FAILURE; each is one line on stderr, "prog: error: why"."""
    from tts.errors import SynthesisError

    previous = {}
    if hasattr(signal, "SIGHUP"):
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                previous[sig] = signal.signal(sig, _raise_terminated)
            except ValueError:  # not the main thread: signals stay as they are
                break
    try:
        return body()
    except (UsageError, *usage) as e:
        print(f"{_prefix()}{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (SynthesisError, MissingExtraError, *failure) as e:
        print(f"{_prefix()}{prog}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # the reader on the other end of standard output went away
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as e:
        print(f"{prog}: stopped by {e}", file=sys.stderr)
        return 128 + e.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
