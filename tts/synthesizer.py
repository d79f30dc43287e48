"""The public pipeline: text in, 16 kHz audio out, streamed chunk by chunk.

    synth = Synthesizer.load()                 # the bundled voice, or .load("path/to/voice")
    audio = synth.synthesize("Hello, world.")  # float32 mono at synth.sample_rate
    for chunk in synth.stream(long_text):      # audio as soon as it is generated
        play(chunk.audio)

Text (or SSML) becomes a plan of normalized sentences and pauses (``tts.text.plan``); each
sentence goes through the acoustic model as a whole, then the vocoder emits its audio in
chunks while it runs, so the first sound comes long before the sentence is done. Only one
sentence is in flight at a time, so memory stays bounded however long the text is. Every
chunk carries the words and phonemes it completes, timed exactly from the alignment.

Randomness is an input: the vocoder's uniforms for sentence i come from a generator seeded by
``(seed, i)`` and are drawn chunk after chunk, so ``synthesize`` is exactly the concatenation
of ``stream`` for the same seed, and every vocoder backend draws the same samples.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from tts.audio import Tempo, write_audio
from tts.errors import MAX_RATE, MIN_RATE, SynthesisError, check_rate, check_seed
from tts.text import NothingToSpeakError, default_g2p, phonemize_words, symbols_to_ids
from tts.text.plan import Pause, Sentence, read_plan
from tts.text.sentences import words as sentence_words
from tts.timings import PhonemeTiming, WordTiming, sentence_timings
from tts.vocoder.choice import AUTO, ChoiceError, VocoderChoice
from tts.voice import BUNDLED_VOICE, Voice, VoiceError, load_voice


@dataclass
class Chunk:
    """A piece of streamed audio and the sentence it belongs to."""

    audio: np.ndarray  # (n,) float32 in [-1, 1]
    text: str  # the sentence, normalized
    phonemes: list[str]
    # (frames, n_mels): the whole sentence's mel (faster than rate 1, the mel of rate 1: the audio
    # is sped up after the vocoder)
    mel: np.ndarray = field(repr=False)
    alignment: np.ndarray = field(repr=False)  # (frames, symbols): which symbol each frame says
    sentence: int = 0  # index of the sentence in the text
    last: bool = False  # the last chunk of its sentence
    # The words and phonemes whose end this chunk's audio holds, timed in the call's audio.
    words: list[WordTiming] = field(default_factory=list)
    phoneme_timings: list[PhonemeTiming] = field(default_factory=list)


def _resolve_device(device: str) -> str:
    """"cpu", "cuda", "cuda:N" or "auto" (a GPU where there is one) -> the device the models run
    on. Where no NVIDIA driver is loaded there is no GPU to ask PyTorch about, and it is not
    imported: the CPU speaks without it."""
    if device == "cpu" or (device == "auto" and not _nvidia_driver()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SynthesisError(f"device {device!r} asked for, but no CUDA GPU is available")
    try:
        return str(torch.device(device))
    except RuntimeError:
        raise SynthesisError(f"unknown device {device!r} (expected cpu, cuda or auto)") from None


def _nvidia_driver() -> bool:
    """Whether an NVIDIA driver may be loaded (Linux: /proc/driver/nvidia; WSL: /dev/dxg);
    elsewhere, assume it may."""
    if not sys.platform.startswith("linux"):
        return True
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/dxg")


def set_threads(threads: int | None = None) -> int:
    """Set the threads each matrix product may use, numpy's BLAS and PyTorch's where it is
    loaded: ``threads``, else OMP_NUM_THREADS when the environment sets it, else 1. Returns
    the number set."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SynthesisError(f"threads must be a positive integer, got {threads!r}")
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def _acoustic(voice: Voice, device: str):
    """The voice's acoustic model as it speaks on ``device``: in numpy on the CPU where its
    kind runs there (`tts.inference.ParallelSpeaker`), else its torch module. Either has
    ``speak_one(ids, rate) -> (mel, alignment)``."""
    from tts.inference import ParallelSpeaker

    entry, weights = voice.arrays("acoustic")
    if device != "cpu" or entry.get("kind") != ParallelSpeaker.kind:
        return voice.acoustic.to(device).eval()
    try:
        return ParallelSpeaker(voice.settings("acoustic"), weights)
    except ValueError as e:
        raise VoiceError(f"{voice.path}: its acoustic model's weights do not match its config: {e}") from None


class Synthesizer:
    """A loaded voice with its vocoder, ready to speak. Safe to share between threads: all
    generation state lives in each call."""

    def __init__(self, voice: Voice, device: str = "auto", vocoder: str | VocoderChoice = AUTO, weights: str = AUTO,
                 backend: str = AUTO, lexicon: str | os.PathLike | dict | None = None):
        from tts.vocoder.runtime import build_vocoder

        choice = _choice(vocoder, backend, weights)
        self.voice = voice
        self.g2p = _g2p(lexicon)
        self.device = _resolve_device(device)
        self.sample_rate = voice.audio.sample_rate
        try:
            self.acoustic = _acoustic(voice, self.device)
            self.vocoder = build_vocoder(voice, choice, self.device)
        except (ChoiceError, VoiceError) as e:  # cannot run here; or the folder has no WaveNet or a broken one
            raise SynthesisError(str(e)) from None

    @property
    def backend(self) -> str:
        """The WaveNet's kernel backend, or the vocoder's name where it has none ("griffin-lim")."""
        return self.vocoder.backend or self.vocoder.name

    @classmethod
    def load(cls, voice: str | os.PathLike | None = None, device: str = "auto", vocoder: str | VocoderChoice = AUTO,
             weights: str = AUTO, threads: int | None = None, backend: str = AUTO,
             lexicon: str | os.PathLike | dict | None = None) -> "Synthesizer":
        """Load a voice folder (default: the voice bundled with the package).

        ``vocoder``: "wavenet", "griffin-lim" or "auto" (the voice's default); ``backend``: the
        WaveNet's kernel, "torch", "numba", "cuda" or "auto" (the fastest usable here); see
        tts.vocoder.choice. ``weights="bf16"`` runs the numba kernel on bfloat16 weights: faster,
        slightly different audio; "auto" (the default) runs the voice's own choice
        (`Voice.wavenet_weights`) where the kernel takes it. A `VocoderChoice` already made stands for all three. ``lexicon``: pronunciations that come before CMUdict and
        the neural G2P, a file in CMUdict's format (`tts.text.lexicon`) or {word: [[phonemes]]}.

        ``threads``: the threads of each matrix product of the acoustic model, the
        conditioning and Griffin-Lim, numpy's BLAS and PyTorch's (process-wide). By default 1, unless OMP_NUM_THREADS says otherwise: a sentence's
        operations are too small to split, and on a machine busy with other work more threads
        wait on each other (BENCHMARKS.md: a paragraph in 44 s with PyTorch's default, 24 s
        with one). Requests in parallel still use every core, one thread each."""
        path = Path(voice) if voice is not None else BUNDLED_VOICE
        if voice is None and not (path / "config.json").is_file():
            raise SynthesisError("no voice installed yet: pass a voice folder")
        try:
            loaded = load_voice(path, device="cpu", require=("acoustic",))  # the vocoder's models when chosen
        except VoiceError as e:
            raise SynthesisError(str(e)) from None
        synth = cls(loaded, device=device, vocoder=vocoder, weights=weights, backend=backend, lexicon=lexicon)
        set_threads(threads)  # after the models are built: PyTorch's too, where they import it
        return synth

    # --- the calls -----------------------------------------------------------------------

    def synthesize(self, text: str, seed: int = 0, rate: float = 1.0, **options) -> np.ndarray:
        """All of ``text`` as one float32 array (the concatenation of ``stream``; ``options``
        as ``stream`` takes them)."""
        pieces = [chunk.audio for chunk in self.stream(text, seed=seed, rate=rate, **options)]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def synthesize_with_timings(self, text: str, seed: int = 0, rate: float = 1.0, **options
                                ) -> tuple[np.ndarray, list[WordTiming], list[PhonemeTiming]]:
        """``synthesize``, with every word's and phoneme's time in the audio."""
        pieces, words, phonemes = [], [], []
        for chunk in self.stream(text, seed=seed, rate=rate, **options):
            pieces.append(chunk.audio)
            words += chunk.words
            phonemes += chunk.phoneme_timings
        return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), words, phonemes

    def synthesize_to_file(self, text: str, path: str | os.PathLike, seed: int = 0, rate: float = 1.0,
                           **options) -> Path:
        """Speak ``text`` into a .wav or .flac file, written completely or not at all."""
        return write_audio(path, self.synthesize(text, seed=seed, rate=rate, **options), self.sample_rate)

    def stream(self, text: str, seed: int = 0, rate: float = 1.0, first_sentence: int = 0, ssml: bool | None = None,
               sentence_pause: float = 0.0, paragraph_pause: float = 0.0) -> Iterator[Chunk]:
        """Yield audio chunks as soon as they are generated, sentence after sentence.

        ``ssml``: read ``text`` as SSML (`tts.text.ssml`); None: when it starts with
        markup (``<speak>``, an XML declaration, a doctype: `tts.text.ssml.is_ssml`). ``sentence_pause`` and ``paragraph_pause``: seconds of silence added
        between sentences and between paragraphs (blank lines, ``<p>``). Each chunk holds the
        words and phonemes it completes, timed from the start of this call's audio, with the
        words' places in ``text``.

        ``first_sentence`` numbers the sentences of text that continues earlier text (a
        ``tts.text.SentenceBuffer``'s sentences, spoken one call each): the calls then give
        exactly the audio of one call on the whole text.

        Raises ``NothingToSpeakError`` (a ValueError) before yielding anything if the text has
        nothing to say, ``tts.text.ssml.SsmlError`` (a ValueError) for malformed SSML, and
        ValueError for a speaking rate outside [MIN_RATE, MAX_RATE] (tts.errors) or a negative pause.
        """
        from tts.text.ssml import is_ssml

        if min(sentence_pause, paragraph_pause) < 0:
            raise ValueError(f"pauses must be 0 or more seconds, got {sentence_pause} and {paragraph_pause}")
        plan = read_plan(text, is_ssml(text) if ssml is None else ssml, sentence_pause, paragraph_pause)
        yield from self.stream_sentences(plan, seed, rate, first_sentence, text=text)

    def stream_sentences(self, sentences: Iterable[Sentence | Pause | str], seed: int = 0, rate: float = 1.0,
                         first_sentence: int = 0, text: str = "") -> Iterator[Chunk]:
        """`stream` for text already planned (`tts.text.plan.read_plan`) or cut into normalized
        sentences (``tts.text.split_sentences``), which are not normalized again. ``text``:
        what the sentences' sources point into (their words are timed without places
        otherwise)."""
        check_rate(rate)
        check_seed(seed)
        index, elapsed, silence = first_sentence, 0, 0  # samples given out, and owed before the next
        for sentence, phonemes, spans in self._pronounce(sentences):
            if isinstance(sentence, Pause):
                silence += round(sentence.seconds * self.sample_rate)
                continue
            for chunk in self._speak_sentence(sentence, phonemes, spans, index, seed, _speed(rate, sentence),
                                              elapsed + silence, text):
                if silence:
                    chunk.audio = np.concatenate([np.zeros(silence, np.float32), chunk.audio])
                    silence = 0
                elapsed += len(chunk.audio)
                yield chunk
            index += 1
        if index == first_sentence:
            raise NothingToSpeakError(f"nothing to speak in the text {text[:40]!r}")
        if silence:  # a pause written after the last sentence
            n_mels = self.voice.audio.n_mels
            yield Chunk(np.zeros(silence, np.float32), "", [], np.zeros((0, n_mels), np.float32),
                        np.zeros((0, 0), np.float32), index - 1, last=True)

    def mel(self, text: str, rate: float = 1.0) -> np.ndarray:
        """The acoustic model's mel of ``text``, its sentences' mels end to end (frames,
        n_mels): the text read and pronounced exactly as `stream` reads it (plan, lexicon,
        G2P), without the vocoder and without pauses. Faster than rate 1 the audio is sped
        up after the vocoder, so the mel is the one of rate 1."""
        from tts.text.ssml import is_ssml

        check_rate(rate)
        mels = [self.sentence_mel(phonemes, _pace_and_speed(_speed(rate, sentence))[0])[0]
                for sentence, phonemes, _ in self._pronounce(read_plan(text, is_ssml(text), 0.0, 0.0))
                if not isinstance(sentence, Pause)]
        return np.concatenate(mels) if mels else np.zeros((0, self.voice.audio.n_mels), np.float32)

    def _pronounce(self, sentences: Iterable[Sentence | Pause | str]
                   ) -> Iterator[tuple[Sentence | Pause, list[str], list[tuple[int, int]]]]:
        """(sentence, its phonemes, each word's span of them) for every sentence that has
        something to say, and (pause, [], []) for each pause."""
        for sentence in sentences:
            if isinstance(sentence, Pause):
                yield sentence, [], []
                continue
            if isinstance(sentence, str):
                sentence = Sentence(sentence, None)
            try:
                phonemes, spans = phonemize_words(sentence.text, self.g2p)
            except NothingToSpeakError:
                continue
            yield sentence, phonemes, spans

    # --- one sentence ----------------------------------------------------------------------

    def sentence_mel(self, phonemes: list[str], rate: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Symbols -> (mel (frames, n_mels), alignment (frames, symbols)), float32, spoken at
        ``rate`` (`tts.acoustic.AcousticModel.speak`)."""
        return self.acoustic.speak_one(symbols_to_ids(phonemes), rate)

    def _speak_sentence(self, sentence: Sentence, phonemes: list[str], spans: list[tuple[int, int]], index: int,
                        seed: int, rate: float, start: int, text: str) -> Iterator[Chunk]:
        """One sentence's chunks; ``start``: the samples of the call's audio before it."""
        pace, speed = _pace_and_speed(rate)
        mel, alignment = self.sentence_mel(phonemes, pace)
        hop, sr = self.voice.audio.hop_length, self.sample_rate
        words, timed = sentence_timings(phonemes, spans, alignment, sentence.sources, text,
                                        sentence_words(sentence.text), start / sr, hop / sr / speed)
        tempo = Tempo(speed, sr) if speed > 1.0 else None
        done = start
        for audio, last in self.vocoder.stream(mel, np.random.default_rng([seed, index])):
            if tempo is not None:
                audio = tempo(audio, last)
                if not len(audio) and not last:
                    continue
            done += len(audio)
            end = float("inf") if last else done / sr + 1e-9
            mine = [w for w in words if w.end <= end]
            words = words[len(mine):]
            ours = [p for p in timed if p.end <= end]
            timed = timed[len(ours):]
            yield Chunk(audio, sentence.text, phonemes, mel, alignment, index, last=last, words=mine,
                        phoneme_timings=ours)


def _speed(rate: float, sentence: Sentence) -> float:
    """The call's rate times the sentence's own (SSML prosody), kept within the bounds."""
    return min(MAX_RATE, max(MIN_RATE, rate * sentence.rate))


def _pace_and_speed(rate: float) -> tuple[float, float]:
    """A speaking rate -> (the acoustic model's pace, the audio's speed-up). Slower than 1 is
    the model's durations; faster, the model speaks at its own pace and the audio is sped up
    (`tts.audio.Tempo`): its durations come from read speech at one pace, and shortened
    further they lose words that time-scaled audio keeps (BENCHMARKS.md, speaking rate)."""
    return min(rate, 1.0), max(rate, 1.0)


def _choice(vocoder, backend: str, weights: str) -> VocoderChoice:
    """The user's vocoder choice, checked once (SynthesisError with the one-line reason)."""
    if isinstance(vocoder, VocoderChoice):
        if (backend, weights) != (AUTO, AUTO):
            raise SynthesisError("a VocoderChoice already holds the backend and the weight format")
        return vocoder
    try:
        return VocoderChoice.parse(vocoder, backend, weights)
    except ChoiceError as e:
        raise SynthesisError(str(e)) from None


def _g2p(lexicon):
    """The pronouncer: the frontend's own, or one that reads a user lexicon first."""
    if lexicon is None:
        return default_g2p()
    from tts.text.lexicon import LexiconError, load_lexicon, user_g2p

    if isinstance(lexicon, dict):
        return user_g2p(lexicon)
    try:
        return user_g2p(load_lexicon(lexicon))
    except LexiconError as e:
        raise SynthesisError(str(e)) from None
