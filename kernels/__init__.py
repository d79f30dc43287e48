"""Fast WaveNet inference kernels: numba CPU, persistent CUDA, and their dispatch.

Every backend takes exactly what `WaveNet.export_weights()` returns and offers

    kernel.name                                  "torch" | "numba" | "cuda"
    kernel.takes_tensors                         whether `generate` takes cond as a torch tensor
    kernel.init_state(batch_size) -> KernelState
    kernel.generate(cond, uniforms, state, sharpness=None) -> (classes, new_state)

with cond (B, T, L, 2R) float32 (each utterance's `export_conditioning` slice), uniforms
(B, T) float32 in [0, 1), classes (B, T) int32; the input state is not modified. The same
uniforms draw the same samples on every backend. sharpness (B, T) float32 > 0, where given,
scales each sample's logits before it is drawn (voicing-dependent sampling,
tts/vocoder/voicing.py). Every kernel starts from silence: the class before the first sample
is `tts.vocoder.wavenet.START_CLASS`, mu-law's zero.

    torch  the reference generator `WaveNet.generate` (kernels/reference.py): slow, always there
    numba  the fused CPU kernel (kernels/cpu.py)
    cuda   the persistent GPU kernel (kernels/cuda.py): needs a CUDA GPU and the `gpu` extra

The names, which weight formats each backend runs, whether each can run here
(`backend_status`) and what "auto" means are decided in one place, `tts.vocoder.choice`;
`open_kernel` trusts a resolved choice. The backends' modules are
imported only when asked for, so that a missing optional package costs nothing until its
backend is chosen.
"""

from __future__ import annotations

from tts.kernels.state import KernelState
from tts.vocoder.choice import (BACKENDS, WAVENET, WEIGHT_FORMATS, BackendUnavailableError, VocoderChoice,
                                available_backends, backend_status)

__all__ = ["BACKENDS", "BackendUnavailableError", "KernelState", "WEIGHT_FORMATS", "available_backends",
           "backend_status", "load_backend", "open_kernel"]


def open_kernel(choice: VocoderChoice, model_or_weights):
    """The kernel of a resolved WaveNet choice (`VocoderChoice.resolve`), for a `WaveNet` or
    its `export_weights()` dict; the choice is trusted. Given the dict, only the torch backend
    imports torch."""
    is_model = not isinstance(model_or_weights, dict)
    if choice.backend == "torch":
        from tts.kernels.reference import TorchKernel

        return TorchKernel.from_model(model_or_weights) if is_model else TorchKernel(model_or_weights)
    exported = model_or_weights.export_weights() if is_model else model_or_weights
    if choice.backend == "numba":
        from tts.kernels.cpu import NumbaKernel

        return NumbaKernel(exported, weight_format=choice.weights)
    from tts.kernels.cuda import CudaKernel

    return CudaKernel(exported)


def load_backend(name: str, model_or_weights, weights: str = "fp32"):
    """A kernel for a `WaveNet` (or its `export_weights()` dict) on backend ``name``.

    ``weights="bf16"`` streams bfloat16 weights (float32 arithmetic) on the numba backend:
    faster, at a measured quality cost (BENCHMARKS.md); the other backends are float32 only.
    Raises ChoiceError (a ValueError) for an unknown name or format or one the backend does
    not run, and BackendUnavailableError for a backend that cannot run here.
    """
    return open_kernel(VocoderChoice(WAVENET, name, weights).resolve(), model_or_weights)
