"""The bounds every way in checks against, each with its one message."""

import math

import numpy as np
import pytest

from tts.errors import MAX_RATE, MIN_RATE, check_rate


@pytest.mark.parametrize("rate", [MIN_RATE, 1, 1.25, np.float32(1.5), MAX_RATE])
def test_rates_in_bounds_pass(rate):
    check_rate(rate)


@pytest.mark.parametrize("rate", [0.49, 2.01, -1, math.nan, math.inf, True, "1.0", None])
def test_other_rates_are_refused_with_the_one_message(rate):
    with pytest.raises(ValueError) as e:
        check_rate(rate)
    assert str(e.value) == f"speaking rate must be from 0.5 to 2, got {rate!r}"
