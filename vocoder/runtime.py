"""The vocoder runtime: a sentence's mel in, its audio out, chunk by chunk as it is made.

    vocoder = build_vocoder(voice, VocoderChoice.parse("auto", "auto"), torch.device("cpu"))
    for audio, last in vocoder.stream(mel, np.random.default_rng(0)):
        ...

Every vocoder streams FIRST_CHUNK_FRAMES first, so that playback starts quickly, then up to
CHUNK_FRAMES at a time (the WaveNet grows its chunks there by doubling, `chunk_bounds`).
Randomness is an input (``rng``), so one seed gives one audio whatever the backend. This is the one path from mel to audio: the engine, the
training evaluation (`WaveNet.vocode`) and the benches all hear what it makes. The choice of
vocoder and kernel is made once, in `tts.vocoder.choice`; `build_vocoder` only builds it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from tts.audio import AudioConfig, griffin_lim_stream, mu_law_decode, soft_limit
from tts.vocoder.choice import GRIFFIN_LIM, VOCODERS, WAVENET, VocoderChoice, backend_status, preferred_backends

# Small first chunk so playback starts quickly; larger ones after amortize per-call costs.
FIRST_CHUNK_FRAMES = 8  # 100 ms
CHUNK_FRAMES = 40  # 500 ms


def chunk_bounds(frames: int) -> Iterator[tuple[int, int]]:
    """The [start, stop) frames of each chunk of a mel of ``frames`` frames: FIRST_CHUNK_FRAMES,
    then each twice the one before, up to CHUNK_FRAMES. While a chunk plays the next is made,
    so a stream stays fed as long as the vocoder runs at half real time or faster (a fixed
    500 ms after the first 100 ms needs five times: two streams sharing a busy machine fell
    behind there)."""
    start, size = 0, FIRST_CHUNK_FRAMES
    while start < frames:
        stop = min(frames, start + size)
        yield start, stop
        start, size = stop, min(2 * size, CHUNK_FRAMES)


class Vocoder:
    """Turns a sentence's mel into audio chunks; one object per resolved `VocoderChoice`."""

    def __init__(self, choice: VocoderChoice, audio: AudioConfig):
        self.choice = choice
        self.audio = audio
        self.sample_rate = audio.sample_rate

    @property
    def name(self) -> str:
        """The vocoder's name in `tts.vocoder.choice.VOCODERS`."""
        return self.choice.vocoder

    @property
    def backend(self) -> str | None:
        """The kernel that runs it, where it has one."""
        return self.choice.backend

    @property
    def label(self) -> str:
        """"wavenet (numba)", "griffin-lim": what a person reads."""
        return self.choice.label

    @classmethod
    def from_voice(cls, voice, choice: VocoderChoice, device: torch.device) -> Vocoder:
        raise NotImplementedError

    def stream(self, mel: torch.Tensor, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, bool]]:
        """mel (frames, n_mels) -> (float32 audio of the next chunk's frames * hop samples,
        whether it is the last), drawing its randomness from ``rng``. The audio never clips:
        what the vocoder makes past 0.9 of full scale bends smoothly below it
        (`tts.audio.soft_limit`, sample by sample, so chunks change nothing)."""
        for audio, last in self.chunks(mel, rng):
            yield soft_limit(audio), last

    def chunks(self, mel: torch.Tensor, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, bool]]:
        """`stream`'s chunks as the vocoder makes them, before the limiter."""
        raise NotImplementedError


class WaveNetVocoder(Vocoder):
    """The WaveNet on one kernel, with the mu-law decoding and the signal filter
    (pre-emphasis or linear prediction) that turn its classes into audio, sampling voiced
    frames more sharply where there is a voicing detector (tts.vocoder.voicing)."""

    def __init__(self, wavenet, choice: VocoderChoice, audio: AudioConfig,
                 device: torch.device = torch.device("cpu"), voicing=None):
        from tts import kernels

        super().__init__(choice, audio)
        self.wavenet = wavenet.to(device).eval()
        self.voicing = None if voicing is None else voicing.to(device).eval()
        self.kernel = kernels.open_kernel(choice, self.wavenet)

    @classmethod
    def from_voice(cls, voice, choice, device):
        return cls(voice.wavenet, choice, voice.audio, device, voice.voicing)

    @torch.no_grad()
    def chunks(self, mel, rng):
        from tts.vocoder.lpc import lpc_from_mel
        from tts.vocoder.wavenet import model_to_signal

        mel_np, state, carry = mel.cpu().numpy(), self.kernel.init_state(1), None
        frames, hop, order = mel.shape[0], self.wavenet.config.hop_length, self.wavenet.signal_order
        frame_sharpness = None if self.voicing is None else self.voicing.sharpness(mel)  # (frames,)
        for start, stop in chunk_bounds(frames):
            # Condition only this chunk's frames (with context), so the first chunk does not
            # wait for the whole sentence to be upsampled.
            cond = self.wavenet.project(self.wavenet.upsample_frames(mel[None], start, stop))  # (1, t, L, 2R)
            uniforms = rng.random((1, cond.shape[1]), dtype=np.float32)
            sharpness = None if frame_sharpness is None else \
                np.repeat(frame_sharpness[start:stop], hop)[None]  # (1, t)
            # LPCNet's inputs: the predictor runs in the kernel's loop, on each sample's
            # coefficients; the synthesis filter after it takes the same ones.
            coefficients = lpc_from_mel(mel_np[start:stop], order) if order else None
            lpc = None if coefficients is None else np.repeat(coefficients, hop, axis=0)[None]
            classes, state = self.kernel.generate(cond if self.kernel.takes_tensors else cond.cpu().numpy(),
                                                  uniforms, state, sharpness=sharpness, lpc=lpc)
            audio, carry = model_to_signal(self.wavenet.config, mu_law_decode(np.asarray(classes[0])),
                                           mel_np[start:stop], carry, coefficients)
            yield audio, stop >= frames


class GriffinLimVocoder(Vocoder):
    """Griffin-Lim: the phase found from the mel alone, no network (tts.audio.griffin_lim_stream)."""

    @classmethod
    def from_voice(cls, voice, choice, device):
        return cls(choice, voice.audio)

    def chunks(self, mel, rng):
        mel = mel.cpu().numpy()
        pieces = griffin_lim_stream(mel, self.audio, seed=int(rng.integers(2**31)),
                                    first_frames=FIRST_CHUNK_FRAMES, frames=CHUNK_FRAMES)
        done = 0
        for audio in pieces:
            done += len(audio) // self.audio.hop_length
            yield audio, done >= len(mel)


# Each vocoder name's runtime class; a new vocoder is its class, its name in
# tts.vocoder.choice, and one line here.
REGISTRY: dict[str, type[Vocoder]] = {WAVENET: WaveNetVocoder, GRIFFIN_LIM: GriffinLimVocoder}


def build_vocoder(voice, choice: VocoderChoice, device: torch.device = torch.device("cpu")) -> Vocoder:
    """The vocoder a voice speaks with: ``choice`` resolved for the voice's default vocoder
    and ``device`` (ChoiceError where it cannot run here), then built."""
    resolved = choice if choice.resolved else choice.resolve(voice.default_vocoder, device.type)
    return REGISTRY[resolved.vocoder].from_voice(voice, resolved, device)


def usable_choices(device: torch.device = torch.device("cpu")) -> list[VocoderChoice]:
    """Every resolved choice that can run here, the WaveNet's fastest backend first."""
    wavenet = [VocoderChoice(WAVENET, b) for b in preferred_backends(device.type) if backend_status(b)[0]]
    return wavenet + [VocoderChoice(name, None) for name in VOCODERS if name != WAVENET]
