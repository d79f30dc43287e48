"""What a user of the engine can get wrong: the errors and the bounds every way in checks
against, in a module that imports nothing heavy, so that the command line can check its
arguments before torch is loaded."""

from __future__ import annotations

import numbers


class AudioFileError(ValueError):
    """An audio file that cannot be read or written."""


class SynthesisError(RuntimeError):
    """The engine cannot run as asked: no voice, an unusable device or vocoder backend."""


# Speaking rate, as a factor of the voice's own: the bounds every way in checks against.
MIN_RATE, MAX_RATE = 0.5, 2.0

# Seeds of the vocoder's random generator.
MAX_SEED = 2 ** 63 - 1


def check_rate(rate) -> None:
    """ValueError unless ``rate`` is a number in [MIN_RATE, MAX_RATE]."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"speaking rate must be from {MIN_RATE:g} to {MAX_RATE:g}, got {rate!r}")


def check_seed(seed) -> None:
    """ValueError unless ``seed`` is an integer in [0, MAX_SEED]."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
