"""Fast WaveNet inference kernels: numba CPU, persistent CUDA, and their dispatch.

Every backend takes exactly what `WaveNet.export_weights()` returns and offers

    kernel.name                                  "torch" | "numba" | "cuda"
    kernel.init_state(batch_size) -> KernelState
    kernel.generate(cond, uniforms, state, sharpness=None) -> (classes, new_state)

with cond (B, T, L, 2R) float32 (each utterance's `export_conditioning` slice), uniforms
(B, T) float32 in [0, 1), classes (B, T) int32; the input state is not modified. The same
uniforms draw the same samples on every backend. sharpness (B, T) float32 > 0, where given,
scales each sample's logits before it is drawn (voicing-dependent sampling,
tts/vocoder/voicing.py).

    torch  the reference generator `WaveNet.generate` (kernels/reference.py): slow, always there
    numba  the fused CPU kernel (kernels/cpu.py)
    cuda   the persistent GPU kernel (kernels/cuda.py): needs a CUDA GPU and the `gpu` extra

Which backend "auto" means is decided in one place, `tts.vocoders.choose_backend`; the names
live in `tts.options`. The backends' modules are imported only when asked for, so that a
missing optional package costs nothing until its backend is chosen.
"""

from __future__ import annotations

import importlib
import importlib.util

from tts.kernels.state import KernelState
from tts.options import BACKENDS, WEIGHT_FORMATS

__all__ = ["BACKENDS", "BackendUnavailableError", "KernelState", "WEIGHT_FORMATS", "available_backends",
           "backend_status", "load_backend"]


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run here."""


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown vocoder backend {name!r}; choose from {', '.join(BACKENDS)}")


def backend_status(name: str) -> tuple[bool, str]:
    """(usable, why not) for one backend; why is "" when usable. Raises ValueError for an
    unknown name."""
    _check_name(name)
    if name == "torch":
        return True, ""
    if name == "numba":
        if importlib.util.find_spec("numba") is None:
            return False, "numba is not installed"
        return True, ""
    if importlib.util.find_spec("tts.kernels.cuda") is None:
        return False, "this installation has no CUDA kernel"
    if not importlib.import_module("tts.kernels.cuda").cuda_usable():
        return False, "no CUDA GPU found"
    return True, ""


def available_backends() -> list[str]:
    """The backends that can run here, fastest last: a subset of BACKENDS in its order."""
    return [name for name in BACKENDS if backend_status(name)[0]]


def load_backend(name: str, model_or_weights, weights: str = "fp32"):
    """A kernel for a `WaveNet` (or its `export_weights()` dict) on backend ``name``.

    ``weights="bf16"`` streams bfloat16 weights (float32 arithmetic) on the numba backend:
    faster, at a measured quality cost (BENCHMARKS.md); the other backends are float32 only.
    Raises ValueError for an unknown name or format and BackendUnavailableError for a
    backend that cannot run here (or not with that format).
    """
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weights!r}; choose from {', '.join(WEIGHT_FORMATS)}")
    ok, why = backend_status(name)
    if not ok:
        raise BackendUnavailableError(f"{name} backend unavailable: {why}")
    if weights != "fp32" and name != "numba":
        raise BackendUnavailableError(f"{name} backend unavailable with {weights} weights: only numba has them")

    from tts.vocoder.wavenet import WaveNet

    if name == "torch":
        from tts.kernels.reference import TorchKernel

        if isinstance(model_or_weights, WaveNet):
            return TorchKernel.from_model(model_or_weights)
        return TorchKernel(model_or_weights)
    exported = (model_or_weights.export_weights() if isinstance(model_or_weights, WaveNet)
                else model_or_weights)
    if name == "numba":
        from tts.kernels.cpu import NumbaKernel

        return NumbaKernel(exported, weight_format=weights)
    from tts.kernels.cuda import CudaKernel

    return CudaKernel(exported)
