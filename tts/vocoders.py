"""Vocoders: a sentence's mel in, its audio out, chunk by chunk as it is made.

    vocoder = build_vocoder(voice, "auto", "auto", device=torch.device("cpu"))
    for audio, last in vocoder.stream(mel, np.random.default_rng(0)):
        ...

Every vocoder streams the same chunks: FIRST_CHUNK_FRAMES first, so that playback starts
quickly, then CHUNK_FRAMES at a time. Randomness is an input (``rng``), so one seed gives
one audio whatever the backend. `build_vocoder` makes the user's choice once: "auto" speaks
with the voice's default vocoder, and runs the WaveNet on the fastest kernel usable here.
The names of the choices live in `tts.options`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Iterator

import numpy as np
import torch

from tts.audio import AudioConfig, griffin_lim_stream, mu_law_decode
from tts.errors import SynthesisError
from tts.options import AUTO, BACKENDS, GRIFFIN_LIM, VOCODERS, WAVENET, ChoiceError, resolve_choice

# Small first chunk so playback starts quickly; larger ones after amortize per-call costs.
FIRST_CHUNK_FRAMES = 8  # 100 ms
CHUNK_FRAMES = 40  # 500 ms


def chunk_bounds(frames: int) -> Iterator[tuple[int, int]]:
    """The [start, stop) frames of each chunk of a mel of ``frames`` frames."""
    start = 0
    while start < frames:
        stop = min(frames, start + (FIRST_CHUNK_FRAMES if start == 0 else CHUNK_FRAMES))
        yield start, stop
        start = stop


class Vocoder:
    """Turns a sentence's mel into audio chunks; one object per (vocoder, backend) choice."""

    name: str = ""  # the vocoder's name in tts.options.VOCODERS
    backend: str | None = None  # the kernel that runs it, where it has one

    def __init__(self, audio: AudioConfig):
        self.audio = audio
        self.sample_rate = audio.sample_rate

    @property
    def label(self) -> str:
        """"wavenet (numba)", "griffin-lim": what a person reads."""
        return f"{self.name} ({self.backend})" if self.backend else self.name

    def stream(self, mel: torch.Tensor, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, bool]]:
        """mel (frames, n_mels) -> (float32 audio of the next chunk's frames * hop samples,
        whether it is the last), drawing its randomness from ``rng``."""
        raise NotImplementedError


class WaveNetVocoder(Vocoder):
    """The voice's WaveNet on one kernel backend, with the mu-law decoding and the signal
    filter (pre-emphasis or linear prediction) that turn its classes into audio, sampling
    voiced frames more sharply where the voice has a voicing detector (vocoder/voicing.py)."""

    name = WAVENET

    def __init__(self, wavenet, audio: AudioConfig, backend: str, weights: str = "fp32",
                 device: torch.device = torch.device("cpu"), voicing=None):
        from tts.kernels import BackendUnavailableError, load_backend

        super().__init__(audio)
        self.wavenet = wavenet.to(device).eval()
        self.voicing = None if voicing is None else voicing.to(device).eval()
        try:
            self.kernel = load_backend(backend, self.wavenet, weights)
        except (BackendUnavailableError, ValueError) as e:
            raise SynthesisError(str(e)) from None
        self.backend = self.kernel.name

    @classmethod
    def from_voice(cls, voice, backend: str, weights: str, device: torch.device) -> "WaveNetVocoder":
        return cls(voice.vocoder, voice.audio, choose_backend(backend, weights, device), weights, device,
                   voice.voicing)

    @torch.no_grad()
    def stream(self, mel, rng):
        from tts.vocoder.wavenet import model_to_signal

        mel_np, state, carry = mel.cpu().numpy(), self.kernel.init_state(1), None
        frames = mel.shape[0]
        frame_sharpness = None if self.voicing is None else self.voicing.sharpness(mel)  # (frames,)
        for start, stop in chunk_bounds(frames):
            # Condition only this chunk's frames (with context), so the first chunk does not
            # wait for the whole sentence to be upsampled.
            cond = self.wavenet.project(self.wavenet.upsample_frames(mel[None], start, stop))  # (1, t, L, 2R)
            uniforms = rng.random((1, cond.shape[1]), dtype=np.float32)
            sharpness = None if frame_sharpness is None else \
                np.repeat(frame_sharpness[start:stop], self.audio.hop_length)[None]  # (1, t)
            classes, state = self.kernel.generate(cond if self.backend == "cuda" else cond.cpu().numpy(),
                                                  uniforms, state, sharpness=sharpness)
            audio, carry = model_to_signal(self.wavenet.config, mu_law_decode(np.asarray(classes[0])),
                                           mel_np[start:stop], carry)
            yield audio, stop >= frames


class GriffinLimVocoder(Vocoder):
    """Griffin-Lim: the phase found from the mel alone, no network (tts.audio.griffin_lim_stream)."""

    name = GRIFFIN_LIM

    @classmethod
    def from_voice(cls, voice, backend: str, weights: str, device: torch.device) -> "GriffinLimVocoder":
        if weights != "fp32":
            raise SynthesisError(f"weights={weights!r} apply to the WaveNet, not to {GRIFFIN_LIM}")
        return cls(voice.audio)

    def stream(self, mel, rng):
        mel = mel.cpu().numpy()
        pieces = griffin_lim_stream(mel, self.audio, seed=int(rng.integers(2**31)),
                                    first_frames=FIRST_CHUNK_FRAMES, frames=CHUNK_FRAMES)
        done = 0
        for audio in pieces:
            done += len(audio) // self.audio.hop_length
            yield audio, done >= len(mel)


def vocoder_class(name: str) -> type[Vocoder]:
    """The class registered for a vocoder name in tts.options.VOCODERS."""
    module, _, cls = VOCODERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def choose_backend(backend: str, weights: str, device: torch.device) -> str:
    """The kernel "auto" runs the WaveNet on: the CUDA kernel where the models run on a GPU
    that it can use, else numba, else the torch reference with a warning (it is far slower
    than real time). Only numba has bf16 weights. A named backend is returned as it is."""
    from tts.kernels import backend_status

    if backend != AUTO:
        return backend
    if weights != "fp32":
        return "numba"
    for name in (("cuda",) if device.type == "cuda" else ()) + ("numba",):
        if backend_status(name)[0]:
            return name
    warnings.warn("no fast vocoder backend can run here (numba is not installed, no CUDA GPU): "
                  "using the torch reference generator, which is far slower than real time",
                  RuntimeWarning, stacklevel=3)
    return "torch"


def build_vocoder(voice, vocoder: str = AUTO, backend: str = AUTO, weights: str = "fp32",
                  device: torch.device = torch.device("cpu")) -> Vocoder:
    """The vocoder a voice speaks with: ``vocoder`` "auto" is the voice's default
    (`Voice.default_vocoder`), and ``backend`` "auto" the fastest kernel usable on ``device``.
    Raises SynthesisError for a choice that cannot run here."""
    try:
        vocoder, backend = resolve_choice(vocoder, backend, weights)
    except ChoiceError as e:
        raise SynthesisError(str(e)) from None
    if vocoder == AUTO:
        vocoder = voice.default_vocoder
        if vocoder == GRIFFIN_LIM and backend != AUTO:
            vocoder = WAVENET  # a kernel asked for: the WaveNet is wanted
        elif vocoder == GRIFFIN_LIM and weights != "fp32":
            raise SynthesisError(f"weights={weights!r} apply to the WaveNet, and this voice speaks through "
                                 f"{GRIFFIN_LIM} by default: ask for the WaveNet too (vocoder='wavenet', "
                                 "--vocoder wavenet)")
    return vocoder_class(vocoder).from_voice(voice, backend, weights, device)


def usable_choices(device: torch.device = torch.device("cpu")) -> list[tuple[str, str | None]]:
    """Every (vocoder, backend) that can run here, the WaveNet's fastest backend first."""
    from tts.kernels import backend_status

    wavenet = [(WAVENET, b) for b in reversed(BACKENDS)
               if backend_status(b)[0] and (b != "cuda" or device.type == "cuda")]
    return wavenet + [(name, None) for name in VOCODERS if name != WAVENET]
