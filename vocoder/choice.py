"""Which vocoder speaks, on which kernel, in which weight format: the names of the engine's
vocoder choices, and the one place a user's choice is checked and made concrete.

    vocoder  "wavenet" (the voice's own network) or "griffin-lim" (phase from the mel alone)
    backend  the WaveNet's kernel: "torch" (the reference), "numba" (CPU), "cuda" (GPU)
    weights  "fp32", or "bf16" (numba only: faster, slightly different audio), or "auto" (the
             voice's own choice where the kernel runs it, `Voice.wavenet_weights`; else fp32)

A choice is a frozen `VocoderChoice`, checked when it is made (`VocoderChoice.parse` reads a
user's three strings); `resolve` turns its "auto"s into what runs for one voice on one
device. Everything after that (the vocoder runtime, the kernels) trusts it. Every way in (the
API, the command lines, the server, the demo, the evaluation and the benches) takes its names
from here; the module imports nothing heavy, so a command checks its options before torch loads.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass

AUTO = "auto"
WAVENET, GRIFFIN_LIM = "wavenet", "griffin-lim"
VOCODERS = (WAVENET, GRIFFIN_LIM)

# The WaveNet's kernels (kernels/), slowest first, with the weight formats each one runs.
BACKEND_WEIGHTS = {"torch": ("fp32",), "numba": ("fp32", "bf16"), "cuda": ("fp32",)}
BACKENDS = tuple(BACKEND_WEIGHTS)
WEIGHT_FORMATS = ("fp32", "bf16")
WEIGHT_CHOICES = (AUTO, *WEIGHT_FORMATS)

VOCODER_CHOICES = (AUTO, *VOCODERS)
BACKEND_CHOICES = (AUTO, *BACKENDS)


class ChoiceError(ValueError):
    """An unknown vocoder, backend or weight format, or two that do not go together."""


class BackendUnavailableError(ChoiceError):
    """A kernel that exists but cannot run here (its package is missing, no GPU)."""


def backend_status(name: str) -> tuple[bool, str]:
    """(usable, why not) for one WaveNet backend; why is "" when usable. Raises ChoiceError
    for an unknown name. Imports a kernel's module only to ask the CUDA one for a GPU."""
    if name not in BACKENDS:
        raise ChoiceError(f"unknown vocoder backend {name!r}; choose from {', '.join(BACKENDS)}")
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


def preferred_backends(device_type: str) -> tuple[str, ...]:
    """The WaveNet's kernels for models on a ``device_type`` device, fastest first: the CUDA
    kernel only where the models run on a GPU, the torch reference last."""
    return tuple(name for name in reversed(BACKENDS) if name != "cuda" or device_type == "cuda")


@dataclass(frozen=True)
class VocoderChoice:
    """A checked (vocoder, backend, weights) triple; "auto" leaves a part to `resolve`.

    ``backend`` is None for a vocoder that runs no kernel (Griffin-Lim)."""

    vocoder: str = AUTO
    backend: str | None = AUTO
    weights: str = AUTO

    def __post_init__(self):
        if self.vocoder not in VOCODER_CHOICES:
            raise ChoiceError(f"unknown vocoder {self.vocoder!r}; choose from {', '.join(VOCODER_CHOICES)}")
        if self.backend is not None and self.backend not in BACKEND_CHOICES:
            raise ChoiceError(f"unknown vocoder backend {self.backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
        if self.weights not in WEIGHT_CHOICES:
            raise ChoiceError(f"unknown weight format {self.weights!r}; choose from {', '.join(WEIGHT_CHOICES)}")
        if self.backend is None and self.vocoder != GRIFFIN_LIM:
            raise ChoiceError(f"vocoder {self.vocoder!r} runs on a kernel: give a backend (or auto)")
        if self.vocoder == GRIFFIN_LIM and self.backend not in (AUTO, None):
            raise ChoiceError(f"backend {self.backend!r} runs the WaveNet, not {GRIFFIN_LIM}")
        if self.vocoder == GRIFFIN_LIM and self.weights not in (AUTO, "fp32"):
            raise ChoiceError(f"weights={self.weights!r} apply to the WaveNet, not to {GRIFFIN_LIM}")
        if self.backend in BACKEND_WEIGHTS and self.weights not in (AUTO, *BACKEND_WEIGHTS[self.backend]):
            runs = [name for name, formats in BACKEND_WEIGHTS.items() if self.weights in formats]
            raise ChoiceError(f"the {self.backend} backend has no {self.weights} weights: only {', '.join(runs)}")

    @classmethod
    def parse(cls, vocoder: str = AUTO, backend: str = AUTO, weights: str = AUTO) -> VocoderChoice:
        """A user's three names, the older single-name spelling read as what it meant:
        ``vocoder="numba"`` (a backend given as the vocoder) is the WaveNet on that backend.
        Raises ChoiceError with a one-line hint."""
        if vocoder in BACKENDS:
            if backend not in (AUTO, vocoder):
                raise ChoiceError(f"vocoder {vocoder!r} is a WaveNet backend, and backend {backend!r} another: "
                                  f"give --vocoder wavenet --backend {backend}")
            vocoder, backend = WAVENET, vocoder
        return cls(vocoder, backend, weights)

    @property
    def resolved(self) -> bool:
        return AUTO not in (self.vocoder, self.backend, self.weights)

    def resolve(self, default_vocoder: str = WAVENET, device_type: str = "cpu",
                default_weights: str = "fp32") -> VocoderChoice:
        """The concrete choice for a voice whose "auto" vocoder is ``default_vocoder`` and
        whose WaveNet runs in ``default_weights`` where a kernel takes them, with its models
        on a ``device_type`` device: a kernel or a weight format asked for means the WaveNet
        is wanted; the backend "auto" is the fastest kernel usable here that runs the weight
        format asked for (the CUDA kernel where the models run on a GPU, else numba, else the
        torch reference with a warning: it is far slower than real time); the weights "auto"
        are ``default_weights`` where that kernel runs them, else float32. Raises
        BackendUnavailableError for a named kernel that cannot run here."""
        vocoder = self.vocoder
        if vocoder == AUTO:
            asked = self.backend not in (AUTO, None) or self.weights not in (AUTO, "fp32")
            vocoder = WAVENET if asked else default_vocoder
        if vocoder == GRIFFIN_LIM:
            return VocoderChoice(GRIFFIN_LIM, None, "fp32")

        def weights_on(backend: str) -> str:
            if self.weights != AUTO:
                return self.weights
            return default_weights if default_weights in BACKEND_WEIGHTS[backend] else "fp32"

        if self.backend not in (AUTO, None):
            ok, why = backend_status(self.backend)
            if not ok:
                raise BackendUnavailableError(f"{self.backend} backend unavailable: {why}")
            return VocoderChoice(WAVENET, self.backend, weights_on(self.backend))
        runs = [name for name in preferred_backends(device_type)
                if self.weights == AUTO or self.weights in BACKEND_WEIGHTS[name]]
        for name in runs:
            if backend_status(name)[0]:
                if name == BACKENDS[0]:
                    warnings.warn("no fast vocoder backend can run here (numba is not installed, no CUDA GPU): "
                                  "using the torch reference generator, which is far slower than real time",
                                  RuntimeWarning, stacklevel=2)
                return VocoderChoice(WAVENET, name, weights_on(name))
        raise BackendUnavailableError(f"{self.weights} weights need the {' or '.join(runs)} backend, "
                                      f"which cannot run here: {backend_status(runs[-1])[1]}")

    @property
    def label(self) -> str:
        """"wavenet (numba)", "griffin-lim": what a person reads."""
        return f"{self.vocoder} ({self.backend})" if self.backend not in (AUTO, None) else self.vocoder
