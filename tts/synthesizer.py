"""The public pipeline: text in, 16 kHz audio out, streamed chunk by chunk.

    synth = Synthesizer.load()                 # the bundled voice, or .load("path/to/voice")
    audio = synth.synthesize("Hello, world.")  # float32 mono at synth.sample_rate
    for chunk in synth.stream(long_text):      # audio as soon as it is generated
        play(chunk.audio)

Text is split into sentences (``tts.text.split_sentences``); each sentence goes through the
acoustic model as a whole (its post-net looks both ways), then the vocoder emits its audio in
chunks while it runs, so the first sound comes long before the sentence is done. Only one
sentence is in flight at a time, so memory stays bounded however long the text is.

Randomness is an input: the vocoder's uniforms for sentence i come from a generator seeded by
``(seed, i)`` and are drawn chunk after chunk, so ``synthesize`` is exactly the concatenation
of ``stream`` for the same seed, and every vocoder backend draws the same samples.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from tts.audio import write_audio
from tts.errors import MAX_RATE, MIN_RATE, SynthesisError, check_seed
from tts.options import AUTO
from tts.text import NothingToSpeakError, phonemize, split_sentences, symbols_to_ids
from tts.vocoders import build_vocoder
from tts.voice import BUNDLED_VOICE, Voice, VoiceError, load_voice

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _sentences(text: str) -> Iterator[str]:
    """The normalized sentences of ``text``, paragraph by paragraph, so that a book starts
    speaking without normalizing all of it first."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        try:
            yield from split_sentences(paragraph)
        except NothingToSpeakError:
            continue




@dataclass
class Chunk:
    """A piece of streamed audio and the sentence it belongs to."""

    audio: np.ndarray  # (n,) float32 in [-1, 1]
    text: str  # the sentence, normalized
    phonemes: list[str]
    mel: np.ndarray = field(repr=False)  # (frames, n_mels): the whole sentence's mel
    alignment: np.ndarray = field(repr=False)  # (frames, symbols): which symbol each frame says
    sentence: int = 0  # index of the sentence in the text
    last: bool = False  # the last chunk of its sentence


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SynthesisError(f"device {device!r} asked for, but no CUDA GPU is available")
    try:
        return torch.device(device)
    except RuntimeError:
        raise SynthesisError(f"unknown device {device!r} (expected cpu, cuda or auto)") from None


def set_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads: ``threads``, else OMP_NUM_THREADS when the environment
    sets it, else 1. Returns the number set."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SynthesisError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return threads


class Synthesizer:
    """A loaded voice with its vocoder, ready to speak. Safe to share between threads: all
    generation state lives in each call."""

    def __init__(self, voice: Voice, device: str = "auto", vocoder: str = AUTO, weights: str = "fp32",
                 backend: str = AUTO):
        self.voice = voice
        self.device = _resolve_device(device)
        self.acoustic = voice.acoustic.to(self.device).eval()
        self.sample_rate = voice.audio.sample_rate
        try:
            self.vocoder = build_vocoder(voice, vocoder, backend, weights, self.device)
        except VoiceError as e:  # the WaveNet asked for, and the folder has none or a broken one
            raise SynthesisError(str(e)) from None

    @property
    def backend(self) -> str:
        """The WaveNet's kernel backend, or the vocoder's name where it has none ("griffin-lim")."""
        return self.vocoder.backend or self.vocoder.name

    @classmethod
    def load(cls, voice: str | os.PathLike | None = None, device: str = "auto", vocoder: str = AUTO,
             weights: str = "fp32", threads: int | None = None, backend: str = AUTO) -> "Synthesizer":
        """Load a voice folder (default: the voice bundled with the package).

        ``vocoder``: "wavenet", "griffin-lim" or "auto" (the voice's default); ``backend``: the
        WaveNet's kernel, "torch", "numba", "cuda" or "auto" (the fastest usable here); see
        tts.options. ``weights="bf16"`` runs the numba kernel on bfloat16 weights: faster,
        slightly different audio.

        ``threads``: PyTorch's threads per operation for the acoustic model and Griffin-Lim
        (process-wide). By default 1, unless OMP_NUM_THREADS says otherwise: a sentence's
        operations are too small to split, and on a machine busy with other work more threads
        wait on each other (BENCHMARKS.md: a paragraph in 44 s with PyTorch's default, 24 s
        with one). Requests in parallel still use every core, one thread each."""
        set_threads(threads)
        path = Path(voice) if voice is not None else BUNDLED_VOICE
        if voice is None and not (path / "config.json").is_file():
            raise SynthesisError("no voice installed yet: pass a voice folder")
        try:
            loaded = load_voice(path, device="cpu", require=("acoustic",))  # the vocoder's models when chosen
        except VoiceError as e:
            raise SynthesisError(str(e)) from None
        return cls(loaded, device=device, vocoder=vocoder, weights=weights, backend=backend)

    # --- the two calls ---------------------------------------------------------------------

    def synthesize(self, text: str, seed: int = 0, rate: float = 1.0) -> np.ndarray:
        """All of ``text`` as one float32 array (the concatenation of ``stream``)."""
        pieces = [chunk.audio for chunk in self.stream(text, seed=seed, rate=rate)]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def synthesize_to_file(self, text: str, path: str | os.PathLike, seed: int = 0, rate: float = 1.0) -> Path:
        """Speak ``text`` into a .wav or .flac file, written completely or not at all."""
        return write_audio(path, self.synthesize(text, seed=seed, rate=rate), self.sample_rate)

    def stream(self, text: str, seed: int = 0, rate: float = 1.0, first_sentence: int = 0) -> Iterator[Chunk]:
        """Yield audio chunks as soon as they are generated, sentence after sentence.

        ``first_sentence`` numbers the sentences of text that continues earlier text (a
        ``tts.text.SentenceBuffer``'s sentences, spoken one call each): the calls then give
        exactly the audio of one call on the whole text.

        Raises ``NothingToSpeakError`` (a ValueError) before yielding anything if the text has
        nothing to say, and ValueError for a speaking rate outside [0.5, 2].
        """
        yield from self.stream_sentences(_sentences(text), seed, rate, first_sentence, about=text)

    def stream_sentences(self, sentences: Iterable[str], seed: int = 0, rate: float = 1.0, first_sentence: int = 0,
                         about: str = "") -> Iterator[Chunk]:
        """`stream` for text already cut into normalized sentences (the output of
        ``tts.text.split_sentences``), which are not normalized again."""
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"speaking rate {rate} is outside [{MIN_RATE}, {MAX_RATE}]")
        check_seed(seed)
        index = first_sentence
        for sentence in sentences:
            try:
                phonemes = phonemize(sentence)
            except NothingToSpeakError:
                continue
            yield from self._speak_sentence(sentence, phonemes, index, seed, rate)
            index += 1
        if index == first_sentence:
            raise NothingToSpeakError(f"nothing to speak in the text {about[:40]!r}")

    # --- one sentence ----------------------------------------------------------------------

    @torch.no_grad()
    def sentence_mel(self, phonemes: list[str], rate: float = 1.0) -> tuple[torch.Tensor, np.ndarray]:
        """Symbols -> (mel (frames, n_mels) on the model's device, alignment (frames, symbols)),
        spoken at ``rate`` (`tts.acoustic.AcousticModel.speak`)."""
        ids = torch.tensor([symbols_to_ids(phonemes)], device=self.device)
        speech = self.acoustic.speak(ids, rate=rate)
        frames = int(speech.lengths[0])
        return speech.mel[0, :frames].contiguous(), speech.alignment[0, :frames].cpu().numpy()

    def _speak_sentence(self, text: str, phonemes: list[str], index: int, seed: int, rate: float) -> Iterator[Chunk]:
        mel, alignment = self.sentence_mel(phonemes, rate)
        mel_np = mel.cpu().numpy()
        for audio, last in self.vocoder.stream(mel, np.random.default_rng([seed, index])):
            yield Chunk(audio, text, phonemes, mel_np, alignment, index, last=last)
