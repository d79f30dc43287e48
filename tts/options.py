"""The engine's choices by name: which vocoder speaks, which kernel runs the WaveNet, and in
which weight format. Every way in (the API, the command lines, the server, the demo, the
evaluation and the benches) takes its names from here; the module imports nothing heavy, so
a command checks its options before torch loads.

    vocoder  "wavenet" (the voice's own network) or "griffin-lim" (phase from the mel alone)
    backend  the WaveNet's kernel: "torch" (the reference), "numba" (CPU), "cuda" (GPU)
    weights  "fp32", or "bf16" (numba only: faster, slightly different audio)

"auto" leaves the choice to the engine (`tts.vocoders.build_vocoder` makes it, once).
"""

from __future__ import annotations

AUTO = "auto"

# Vocoder name -> "module:class" of its `tts.vocoders.Vocoder`, imported when chosen. A new
# vocoder is its own class and one line here.
VOCODERS = {
    "wavenet": "tts.vocoders:WaveNetVocoder",
    "griffin-lim": "tts.vocoders:GriffinLimVocoder",
}
WAVENET, GRIFFIN_LIM = "wavenet", "griffin-lim"

# The WaveNet's kernel backends (kernels/), slowest first.
BACKENDS = ("torch", "numba", "cuda")
WEIGHT_FORMATS = ("fp32", "bf16")

VOCODER_CHOICES = (AUTO, *VOCODERS)
BACKEND_CHOICES = (AUTO, *BACKENDS)


class ChoiceError(ValueError):
    """An unknown vocoder, backend or weight format, or two that do not go together."""


def resolve_choice(vocoder: str = AUTO, backend: str = AUTO, weights: str = "fp32") -> tuple[str, str]:
    """Check a (vocoder, backend) pair by name; returns it with the older single-name spelling
    read as what it meant: ``vocoder="numba"`` (a backend given as the vocoder) is the WaveNet
    on that backend. Raises ChoiceError with a one-line hint."""
    if vocoder in BACKENDS:
        if backend not in (AUTO, vocoder):
            raise ChoiceError(f"vocoder {vocoder!r} is a WaveNet backend, and backend {backend!r} another: "
                              f"give --vocoder wavenet --backend {backend}")
        vocoder, backend = WAVENET, vocoder
    if vocoder not in VOCODER_CHOICES:
        raise ChoiceError(f"unknown vocoder {vocoder!r}; choose from {', '.join(VOCODER_CHOICES)}")
    if backend not in BACKEND_CHOICES:
        raise ChoiceError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
    if weights not in WEIGHT_FORMATS:
        raise ChoiceError(f"unknown weight format {weights!r}; choose from {', '.join(WEIGHT_FORMATS)}")
    if vocoder == GRIFFIN_LIM and backend != AUTO:
        raise ChoiceError(f"backend {backend!r} runs the WaveNet, not {GRIFFIN_LIM}")
    return vocoder, backend
