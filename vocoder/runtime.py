"""The vocoder runtime: a sentence's mel in, its audio out, chunk by chunk as it is made.

    vocoder = build_vocoder(voice, VocoderChoice.parse("auto", "auto"), "cpu")
    for audio, last in vocoder.stream(mel, np.random.default_rng(0)):  # mel (frames, n_mels) numpy
        ...

Every vocoder streams FIRST_CHUNK_FRAMES first, so that playback starts quickly, then up to
CHUNK_FRAMES at a time (the WaveNet grows its chunks there by doubling, `chunk_bounds`).
Randomness is an input (``rng``), so one seed gives one audio whatever the backend. This is
the one path from mel to audio: the engine, the training evaluation (`WaveNet.vocode`) and the
benches all hear what it makes. The choice of vocoder and kernel is made once, in
`tts.vocoder.choice`; `build_vocoder` only builds it. On the CPU every kernel takes the numpy
conditioning (`tts.vocoder.inference`), so the numba kernel runs without PyTorch; on a GPU the
torch network makes it where it lies.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from tts.audio import AudioConfig, griffin_lim_stream, mu_law_decode, soft_limit
from tts.vocoder.choice import GRIFFIN_LIM, VOCODERS, WAVENET, VocoderChoice, backend_status, preferred_backends
from tts.vocoder.inference import (Conditioning, WaveNetConfig, frame_sharpness, kernel_weights,
                                   model_to_signal)

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
    def from_voice(cls, voice, choice: VocoderChoice, device: str) -> Vocoder:
        raise NotImplementedError

    def stream(self, mel: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, bool]]:
        """mel (frames, n_mels) -> (float32 audio of the next chunk's frames * hop samples,
        whether it is the last), drawing its randomness from ``rng``. The audio never clips:
        what the vocoder makes past 0.9 of full scale bends smoothly below it
        (`tts.audio.soft_limit`, sample by sample, so chunks change nothing)."""
        for audio, last in self.chunks(np.asarray(mel, np.float32), rng):
            yield soft_limit(audio), last

    def chunks(self, mel: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, bool]]:
        """`stream`'s chunks as the vocoder makes them, before the limiter."""
        raise NotImplementedError


class TorchConditioning:
    """The torch WaveNet's conditioning on its GPU, behind `tts.vocoder.inference.Conditioning`'s
    interface: what the CUDA kernel takes where the network lies."""

    def __init__(self, wavenet, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.wavenet = wavenet.to(self.device).eval()

    def frames(self, mel: np.ndarray, start: int, stop: int):
        with self.torch.no_grad():
            mel = self.torch.from_numpy(mel).to(self.device)[None]
            return self.wavenet.project(self.wavenet.upsample_frames(mel, start, stop))[0]  # (t, L, 2R)


class WaveNetVocoder(Vocoder):
    """The WaveNet on one kernel, with the mu-law decoding and the signal filter
    (pre-emphasis or linear prediction) that turn its classes into audio, sampling voiced
    frames more sharply where there is a voicing detector (tts.vocoder.voicing)."""

    def __init__(self, config: WaveNetConfig, conditioning, kernel, choice: VocoderChoice, audio: AudioConfig,
                 sharpness=None):
        """``conditioning``: a `Conditioning` (or `TorchConditioning`) of the network the
        ``kernel`` runs; ``sharpness``: mel (frames, n_mels) -> each frame's logit scale, or None."""
        super().__init__(choice, audio)
        self.config, self.conditioning, self.kernel, self.sharpness = config, conditioning, kernel, sharpness

    @classmethod
    def from_voice(cls, voice, choice, device):
        from tts.voice import VoiceError

        if not choice.resolved:  # the weights left to the voice
            choice = choice.resolve(WAVENET, _device_type(device), voice.wavenet_weights)
        sharpness = None
        if voice.has("voicing"):
            voicing, detector = voice.settings("voicing"), voice.arrays("voicing")[1]
            sharpness = lambda mel: frame_sharpness(voicing, detector, mel)  # noqa: E731
        if _device_type(device) != "cpu":
            return cls.from_wavenet(voice.wavenet, choice, voice.audio, device, sharpness)
        try:
            return cls._on_arrays(voice.settings("vocoder"), voice.arrays("vocoder")[1], choice, voice.audio, sharpness)
        except (KeyError, ValueError) as e:
            raise VoiceError(f"{voice.path}: its WaveNet's weights do not match its config: {e}") from None

    @classmethod
    def from_wavenet(cls, wavenet, choice: VocoderChoice, audio: AudioConfig, device: str = "cpu",
                     sharpness=None) -> WaveNetVocoder:
        """A torch `WaveNet`'s vocoder, as a voice holding it speaks: on the CPU, the numpy
        conditioning on its weights as arrays; on a GPU, the network's own where it lies."""
        from tts import kernels

        if not choice.resolved:
            choice = choice.resolve(WAVENET, _device_type(device))
        if _device_type(device) == "cpu":
            weights = {k: v.detach().cpu().numpy() for k, v in wavenet.state_dict().items()}
            return cls._on_arrays(wavenet.config, weights, choice, audio, sharpness)
        return cls(wavenet.config, TorchConditioning(wavenet, str(device)), kernels.open_kernel(choice, wavenet),
                   choice, audio, sharpness)

    @classmethod
    def _on_arrays(cls, config: WaveNetConfig, weights: dict[str, np.ndarray], choice, audio, sharpness):
        """The numpy conditioning and the kernel on a state dict's arrays: on the numba kernel,
        no PyTorch; every CPU kernel takes the same conditioning, so draws the same samples."""
        from tts import kernels

        return cls(config, Conditioning(config, weights), kernels.open_kernel(choice, kernel_weights(config, weights)),
                   choice, audio, sharpness)

    def chunks(self, mel, rng):
        from tts.vocoder.lpc import lpc_from_mel

        state, carry = self.kernel.init_state(1), None
        frames, hop, order = mel.shape[0], self.config.hop_length, self.config.signal_order
        frame_sharpness = None if self.sharpness is None else self.sharpness(mel)  # (frames,)
        for start, stop in chunk_bounds(frames):
            # Condition only this chunk's frames (with context), so the first chunk does not
            # wait for the whole sentence to be upsampled.
            cond = self.conditioning.frames(mel, start, stop)[None]  # (1, t, L, 2R)
            uniforms = rng.random((1, cond.shape[1]), dtype=np.float32)
            sharpness = None if frame_sharpness is None else \
                np.repeat(frame_sharpness[start:stop], hop)[None]  # (1, t)
            # LPCNet's inputs: the predictor runs in the kernel's loop, on each sample's
            # coefficients; the synthesis filter after it takes the same ones.
            coefficients = lpc_from_mel(mel[start:stop], order) if order else None
            lpc = None if coefficients is None else np.repeat(coefficients, hop, axis=0)[None]
            if self.kernel.takes_tensors and isinstance(cond, np.ndarray):
                import torch  # loaded already: a kernel that takes tensors is torch's

                cond = torch.from_numpy(cond)
            classes, state = self.kernel.generate(cond, uniforms, state, sharpness=sharpness, lpc=lpc)
            audio, carry = model_to_signal(self.config, mu_law_decode(np.asarray(classes[0])), mel[start:stop],
                                           carry, coefficients)
            yield audio, stop >= frames


class GriffinLimVocoder(Vocoder):
    """Griffin-Lim: the phase found from the mel alone, no network (tts.audio.griffin_lim_stream)."""

    @classmethod
    def from_voice(cls, voice, choice, device):
        import torch  # noqa: F401  its STFT pair (`griffin_lim_stream`), loaded before the threads are set

        return cls(choice, voice.audio)

    def chunks(self, mel, rng):
        pieces = griffin_lim_stream(mel, self.audio, seed=int(rng.integers(2**31)),
                                    first_frames=FIRST_CHUNK_FRAMES, frames=CHUNK_FRAMES)
        done = 0
        for audio in pieces:
            done += len(audio) // self.audio.hop_length
            yield audio, done >= len(mel)


# Each vocoder name's runtime class; a new vocoder is its class, its name in
# tts.vocoder.choice, and one line here.
REGISTRY: dict[str, type[Vocoder]] = {WAVENET: WaveNetVocoder, GRIFFIN_LIM: GriffinLimVocoder}


def build_vocoder(voice, choice: VocoderChoice, device: str = "cpu") -> Vocoder:
    """The vocoder a voice speaks with: ``choice`` resolved for the voice's default vocoder
    and ``device`` ("cpu", "cuda", "cuda:1"; ChoiceError where it cannot run here), then built."""
    resolved = choice if choice.resolved else choice.resolve(voice.default_vocoder, _device_type(device),
                                                             voice.wavenet_weights)
    return REGISTRY[resolved.vocoder].from_voice(voice, resolved, str(device))


def _device_type(device) -> str:
    return str(device).partition(":")[0]


def usable_choices(device: str = "cpu") -> list[VocoderChoice]:
    """Every vocoder and kernel that can run here, the WaveNet's fastest backend first (the
    weight format left to each voice, `Voice.wavenet_weights`)."""
    wavenet = [VocoderChoice(WAVENET, b) for b in preferred_backends(_device_type(device)) if backend_status(b)[0]]
    return wavenet + [VocoderChoice(name, None) for name in VOCODERS if name != WAVENET]
