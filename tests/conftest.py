import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("NUMBA_NUM_THREADS", "2")


def _cuda_kernel_usable() -> bool:
    """Whether the CUDA kernel can run here, by its own check (numba-cuda and a GPU), not
    torch's: a CPU build of torch on a GPU machine must still run the GPU tests."""
    try:
        from tts.kernels.cuda import cuda_usable
    except ImportError:
        return False
    return cuda_usable()


def pytest_collection_modifyitems(config, items):
    if not any("cuda" in item.keywords for item in items) or _cuda_kernel_usable():
        return
    skip = pytest.mark.skip(reason="needs a GPU the CUDA kernel can use (tts.kernels.cuda.cuda_usable)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Caches the engine keeps between runs (the trainer's measured CPU format) go to a
    folder of the test session's, never the user's; subprocesses inherit it."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    """A tiny random-weight voice folder (tests/voices.py), one per test module."""
    from voices import make_tiny_voice

    return make_tiny_voice(tmp_path_factory.mktemp("voice") / "tiny")


@pytest.fixture(scope="module")
def synth(voice):
    from tts import Synthesizer

    return Synthesizer.load(voice, device="cpu")
