"""Audio I/O and features: 16 kHz mono float32 waveforms, log-mel spectrograms, 8-bit mu-law.

Layouts: a waveform is ``(T,)`` (or ``(B, T)`` for the torch mel), a mel spectrogram is
``(frames, n_mels)`` — time first, like every activation in the engine.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from tts.config import JsonConfig
from tts.errors import AudioFileError
from tts.files import FILE_MODE, check_writable, temporary_beside


@dataclass(frozen=True)
class AudioConfig(JsonConfig):
    """Every number that turns a waveform into model features. Stored in every checkpoint."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 800  # 50 ms
    hop_length: int = 200  # 12.5 ms: one mel frame per 200 samples
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    # Log compression and normalization: dB relative to ref_level_db, mapped from
    # [min_level_db, 0] onto [0, 1]. The floor (1e-5 amplitude = -100 dB) is silence.
    min_level_db: float = -100.0
    ref_level_db: float = 20.0
    mu_law_classes: int = 256

    def fingerprint(self) -> str:
        """A short stable string that changes whenever any feature number changes."""
        import hashlib

        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]

    def n_frames(self, n_samples: int) -> int:
        """Mel frames for a waveform of ``n_samples`` (centered STFT)."""
        return 1 + n_samples // self.hop_length


DEFAULT_AUDIO = AudioConfig()


# --- Files -------------------------------------------------------------------------------

def load_audio(path: str | os.PathLike, config: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """Read any file soundfile can read, at any rate and channel count: (T,) float32 mono."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise AudioFileError(f"cannot read audio file {path}: {e}") from None
    except (ValueError, MemoryError):
        # libsndfile takes a FLAC whose header leaves the length unknown (streamed) as endless.
        raise AudioFileError(f"cannot read audio file {path}: its header gives no usable length "
                             "(a stream saved before it ended?)") from None
    return to_mono_16k(audio, sr, config)


def to_mono_16k(audio: np.ndarray, sample_rate: int, config: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """Down-mix (T, channels) or (T,) to mono and resample to the config's rate."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if sample_rate != config.sample_rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=config.sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


# The soft limiter: samples up to the knee are left exactly as they are; above it a tanh
# bends the rest toward the ceiling with slope 1 at the knee (no corner to hear). The ceiling
# sits below full scale, so that no float32 rounding and no int16 rounding reach it.
LIMIT_KNEE = 0.9
LIMIT_CEILING = 0.999


def soft_limit(audio: np.ndarray, knee: float = LIMIT_KNEE, ceiling: float = LIMIT_CEILING) -> np.ndarray:
    """(T,) float audio -> (T,) float32 that never clips: samples within [-knee, knee] come
    back unchanged, all others bent smoothly into [-ceiling, ceiling], strictly inside
    (-1, 1). Sample by sample, with no state, so a stream limited chunk by chunk is the whole
    limited at once. NaN becomes silence (0), an infinity the ceiling."""
    if not 0.0 < knee < ceiling < 1.0:
        raise ValueError(f"soft_limit needs 0 < knee < ceiling < 1, got knee {knee}, ceiling {ceiling}")
    x = np.asarray(audio, dtype=np.float32)
    over = ~(np.abs(x) <= knee)  # NaN counts as over, and goes to 0 below
    if not over.any():
        return x
    y = x.copy()
    room = ceiling - knee
    magnitude = knee + room * np.tanh((np.abs(x[over]).astype(np.float64) - knee) / room)
    y[over] = np.nan_to_num(np.sign(x[over]) * magnitude, nan=0.0)
    return y


# Speech faster than it was spoken, by time-scale modification: WSOLA (waveform-similarity
# overlap-add, Verhelst & Roelands 1993) cuts the audio into 32 ms frames and lays them
# closer together, each shifted within a tolerance to where its waveform continues the one
# before, so pitch and formants stay as they were. Beyond the acoustic model's own pace this
# keeps far more words understood than ever-shorter durations do (BENCHMARKS.md, speaking
# rate), as eSpeak NG speeds its fastest speech up with Sonic.
TEMPO_FRAME_SECONDS = 0.032


class Tempo:
    """Audio sped up ``speed`` times (>= 1), chunk by chunk: ``tempo(chunk, last)`` returns
    the faster audio ready so far, and with ``last`` all the rest, round(input / speed)
    samples in all. A stream of chunks gives the same audio as the whole at once. Output
    samples are weighted means of input samples, so they stay within the input's range (a
    limited input stays limited)."""

    def __init__(self, speed: float, sample_rate: int = DEFAULT_AUDIO.sample_rate):
        from audiotsm import wsola

        if not speed >= 1.0:
            raise ValueError(f"Tempo speeds speech up: speed must be >= 1, got {speed}")
        self.speed, self._frame = speed, round(TEMPO_FRAME_SECONDS * sample_rate)
        self._tsm = wsola(1, speed=speed, frame_length=self._frame)
        self._read = self._written = 0

    def __call__(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        from audiotsm.io.array import ArrayReader, ArrayWriter

        audio = np.asarray(audio, np.float32)
        self._read += len(audio)
        if last:  # a frame of silence after the end carries the last input frames out
            audio = np.concatenate([audio, np.zeros(2 * self._frame, np.float32)])
        reader, writer = ArrayReader(audio[None]), ArrayWriter(1)
        finished = False
        while not (finished and reader.empty):
            self._tsm.read_from(reader)
            _, finished = self._tsm.write_to(writer)
        while last and not finished:
            _, finished = self._tsm.flush_to(writer)
        out = writer.data[0].astype(np.float32)
        if last:
            owed = max(0, round(self._read / self.speed) - self._written)
            out = np.pad(out[:owed], (0, max(0, owed - len(out))))  # exactly what is owed
            self._tsm.clear()
            self._read = self._written = 0
            return out
        self._written += len(out)
        return out


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> int16, rounded to nearest. Converting here rather than in
    libsndfile makes WAV, FLAC and raw PCM output carry the very same samples. Faithful, not
    limited: a corpus written and read back must round-trip; speech is limited where the
    engine makes it (`soft_limit`)."""
    return np.round(np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)


class AudioWriter:
    """Write 16-bit WAV or FLAC (by extension) piece by piece, atomically.

    The audio goes to a temporary file beside the target, renamed into place when the
    ``with`` block ends without error; on any error (or Ctrl-C) the temporary file is removed,
    so the target is complete or absent, never half-written.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = DEFAULT_AUDIO.sample_rate):
        self.path = Path(path)
        self.format = {".wav": "WAV", ".flac": "FLAC"}.get(self.path.suffix.lower())
        if self.format is None:
            raise AudioFileError(f"unsupported output format {self.path.suffix!r}: use .wav or .flac")
        check_writable(self.path)
        self.sample_rate = sample_rate

    def __enter__(self) -> "AudioWriter":
        self._tmp = None
        try:
            self._tmp = temporary_beside(self.path)
            os.chmod(self._tmp, FILE_MODE)  # mkstemp's 0600 would survive the rename
            self._file = sf.SoundFile(self._tmp, "w", self.sample_rate, 1, subtype="PCM_16", format=self.format)
        except (OSError, sf.LibsndfileError) as e:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
            raise AudioFileError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from None
        return self

    def write(self, audio: np.ndarray) -> None:
        self._file.write(to_pcm16(audio))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._file.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        except OSError as e:
            if exc_type is None:
                raise AudioFileError(f"cannot write {self.path}: {e.strerror or e}") from None
        finally:
            Path(self._tmp).unlink(missing_ok=True)  # gone already once renamed into place


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = DEFAULT_AUDIO.sample_rate) -> Path:
    """Write 16-bit WAV or FLAC (by extension) atomically: the file is complete or absent."""
    with AudioWriter(path, sample_rate) as writer:
        writer.write(audio)
    return writer.path


# --- Level -------------------------------------------------------------------------------

def trim_silence(audio: np.ndarray, top_db: float = 40.0, pad: int = 800) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``top_db`` below the peak, keeping ``pad`` samples."""
    import librosa

    if audio.size == 0:
        return audio
    _, (start, end) = librosa.effects.trim(audio, top_db=top_db, frame_length=1024, hop_length=256)
    return audio[max(0, start - pad): min(len(audio), end + pad)]


def normalize_peak(audio: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so the largest absolute sample is ``peak``; silence stays silence."""
    m = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if m == 0.0 else (audio * (peak / m)).astype(np.float32)


def normalize_loudness(audio: np.ndarray, target_dbfs: float = -20.0, peak: float = 0.99) -> np.ndarray:
    """Scale to an RMS level of ``target_dbfs``, then limit the peak so nothing clips."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms == 0.0:
        return audio
    out = audio * (10.0 ** (target_dbfs / 20.0) / rms)
    m = float(np.max(np.abs(out)))
    if m > peak:
        out = out * (peak / m)
    return out.astype(np.float32)


# --- Mel spectrogram ---------------------------------------------------------------------

# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
_MEL_HZ_STEP, _MEL_KNEE_HZ, _MEL_LOG_STEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
_MEL_KNEE = _MEL_KNEE_HZ / _MEL_HZ_STEP


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    return np.where(hz >= _MEL_KNEE_HZ, _MEL_KNEE + np.log(np.maximum(hz, 1e-10) / _MEL_KNEE_HZ) / _MEL_LOG_STEP,
                    hz / _MEL_HZ_STEP)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= _MEL_KNEE, _MEL_KNEE_HZ * np.exp(_MEL_LOG_STEP * (mel - _MEL_KNEE)), mel * _MEL_HZ_STEP)


@lru_cache(maxsize=8)
def mel_basis(config: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """Slaney-normalized mel filterbank, (n_mels, n_fft // 2 + 1): librosa.filters.mel's
    numbers, made here because importing librosa.filters imports scipy.signal, about a
    second before the first sentence can speak."""
    fft_hz = np.fft.rfftfreq(config.n_fft, 1.0 / config.sample_rate)  # (F,)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax), config.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, F)
    weights = np.zeros((config.n_mels, len(fft_hz)), np.float32)
    for i in range(config.n_mels):  # triangles rising over one band and falling over the next
        weights[i] = np.maximum(0.0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per band (Slaney)
    return weights


def _normalize_db(mel_amplitude, config: AudioConfig, xp):
    floor = 10.0 ** (config.min_level_db / 20.0)
    db = 20.0 * xp.log10(xp.clip(mel_amplitude, floor, None)) - config.ref_level_db
    return xp.clip((db - config.min_level_db) / -config.min_level_db, 0.0, 1.0)


def mel_spectrogram(audio: np.ndarray, config: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """(T,) waveform -> (frames, n_mels) normalized log-mel in [0, 1], with librosa."""
    import librosa

    spec = np.abs(librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=config.n_fft,
                               hop_length=config.hop_length, win_length=config.win_length,
                               window="hann", center=True, pad_mode="reflect"))  # (F, frames)
    # Summed in float64 and rounded once: a float32 product's last bit depends on the BLAS
    # kernel and its thread split, and a feature must not depend on the process that made it.
    mel = mel_basis(config).astype(np.float64) @ spec.astype(np.float64)  # (n_mels, frames)
    return np.ascontiguousarray(_normalize_db(mel, config, np).T, dtype=np.float32)


def mel_spectrogram_torch(audio, config: AudioConfig = DEFAULT_AUDIO, basis: np.ndarray | None = None):
    """(B, T) or (T,) waveform tensor -> (B, frames, n_mels) or (frames, n_mels); same numbers as
    librosa. ``basis``: the filterbank (`mel_basis`), where librosa is not there to make it."""
    import torch

    squeeze = audio.dim() == 1
    x = audio.unsqueeze(0) if squeeze else audio  # (B, T)
    window = torch.hann_window(config.win_length, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length,
                      window=window, center=True, pad_mode="reflect", return_complex=True).abs()  # (B, F, frames)
    basis = torch.from_numpy(mel_basis(config) if basis is None else basis).to(x.device, x.dtype)
    mel = _normalize_db(basis @ spec, config, torch).transpose(1, 2)  # (B, frames, n_mels)
    return mel[0] if squeeze else mel


def mel_amplitude(mel: np.ndarray, config: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """Undo the log compression and normalization: (frames, n_mels) in [0, 1] -> the mel
    filterbank's amplitudes (frames, n_mels). The floor (0) comes back as -100 dB."""
    db = np.asarray(mel, dtype=np.float64) * -config.min_level_db + config.min_level_db + config.ref_level_db
    return (10.0 ** (db / 20.0)).astype(np.float32)


GRIFFIN_LIM_ITERATIONS = 32


@lru_cache(maxsize=4)
def mel_pinv(config: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """Pseudo-inverse of the mel filterbank, (n_fft // 2 + 1, n_mels): mel amplitudes back to an
    STFT magnitude (Griffin-Lim) or power spectrum (linear prediction)."""
    return np.linalg.pinv(mel_basis(config)).astype(np.float32)


def griffin_lim(mel: np.ndarray, config: AudioConfig = DEFAULT_AUDIO, n_iter: int = GRIFFIN_LIM_ITERATIONS,
                seed: int = 0) -> np.ndarray:
    """A normalized mel (frames, n_mels) -> audio (frames * hop,) float32, by Griffin-Lim:
    the filterbank's pseudo-inverse back to an STFT magnitude (as close as non-negative least
    squares on speech, and a thousand times faster), then phase from ``n_iter`` Griffin-Lim
    iterations (librosa), starting from a random phase drawn from ``seed``."""
    import librosa

    mel = np.asarray(mel, dtype=np.float32)
    if len(mel) == 0:
        return np.zeros(0, np.float32)
    frames = len(mel)
    # librosa wants a signal at least n_fft long: pad a short mel with silence (the floor, 0).
    mel = np.pad(mel, ((0, max(0, -(-config.n_fft // config.hop_length) + 1 - frames)), (0, 0)))
    magnitude = np.maximum(mel_pinv(config) @ mel_amplitude(mel, config).T, 0.0)  # (n_fft // 2 + 1, frames)
    audio = librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=config.hop_length,
                               win_length=config.win_length, n_fft=config.n_fft, window="hann", center=True,
                               random_state=seed)
    # Frame i stands for samples [i * hop, (i + 1) * hop), as in the vocoder.
    audio = np.pad(audio, (0, max(0, frames * config.hop_length - len(audio))))[: frames * config.hop_length]
    return np.clip(audio, -1.0, 1.0).astype(np.float32)



def griffin_lim_stream(mel: np.ndarray, config: AudioConfig = DEFAULT_AUDIO, n_iter: int = GRIFFIN_LIM_ITERATIONS,
                       seed: int = 0, first_frames: int = 8, frames: int = 40, lookahead: int = 16
                       ) -> Iterator[np.ndarray]:
    """Griffin-Lim piece by piece, for streaming: the audio of mel frames [0, first_frames),
    then of each next ``frames`` frames, each piece as soon as it is found.

    Each piece runs ``n_iter`` fast Griffin-Lim iterations over its frames plus ``lookahead``
    frames ahead and some frames behind; the phases of frames that already shaped audio given
    out are held fixed (real-time iterative spectrogram inversion with look-ahead), so the
    pieces join without a seam and a piece never waits for the rest of the sentence."""
    mel = np.asarray(mel, dtype=np.float32)
    total, hop = len(mel), config.hop_length
    if total == 0:
        return
    if min(first_frames, frames) < 1 or lookahead < 0:
        raise ValueError(f"first_frames and frames must be >= 1 and lookahead >= 0, got "
                         f"{first_frames}, {frames}, {lookahead}")
    import torch  # its STFT pair; only Griffin-Lim needs it on the way to audio

    reach = -(-config.win_length // (2 * hop))  # frames on each side whose window covers a sample
    magnitude = torch.from_numpy(np.maximum(mel_pinv(config) @ mel_amplitude(mel, config).T, 0.0))  # (F, frames)
    generator = torch.Generator().manual_seed(seed)
    angles = torch.polar(torch.ones_like(magnitude), 2 * np.pi * torch.rand(magnitude.shape, generator=generator))
    window = torch.hann_window(config.win_length)
    stft = dict(n_fft=config.n_fft, hop_length=hop, win_length=config.win_length, window=window, center=True)
    momentum = 0.99 / 1.99  # fast Griffin-Lim (Perraudin et al.), as librosa's default
    fixed = start = 0  # phases of frames [0, fixed) are final
    while start < total:
        stop = min(total, start + (first_frames if start == 0 else frames))
        a, b = max(0, start - 2 * reach), min(total, stop + max(lookahead, reach))
        held = fixed - a  # the piece's first frames, held
        mag, phase = magnitude[:, a:b], angles[:, a:b].clone()
        length = (b - a - 1) * hop
        previous = torch.zeros_like(phase)
        for _ in range(n_iter if b - a > 1 else 0):
            rebuilt = torch.stft(torch.istft(mag * phase, length=length, **stft), pad_mode="constant",
                                 return_complex=True, **stft)
            update = rebuilt - momentum * previous
            previous = rebuilt
            update = update / (update.abs() + 1e-16)
            phase = torch.cat([phase[:, :held], update[:, held:]], dim=1)
        angles[:, a:b] = phase
        audio = torch.istft(mag * phase, length=length, **stft).numpy() if b - a > 1 else np.zeros(0, np.float32)
        audio = np.pad(audio, (0, (b - a) * hop - len(audio)))  # frame i stands for [i * hop, (i + 1) * hop)
        fixed = min(total, stop + reach)
        yield np.clip(audio[(start - a) * hop:(stop - a) * hop], -1.0, 1.0).astype(np.float32)
        start = stop


# --- Mu-law ------------------------------------------------------------------------------

def _is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch: where torch is not loaded,
    nothing is one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def mu_law_encode(audio, classes: int = 256):
    """Float audio in [-1, 1] -> integer classes 0..classes-1 (numpy int64 or torch long)."""
    mu = classes - 1
    if _is_tensor(audio):
        import torch

        x = audio.clamp(-1.0, 1.0)
        y = torch.sign(x) * torch.log1p(mu * x.abs()) / np.log1p(mu)
        return torch.floor((y + 1.0) / 2.0 * mu + 0.5).long()
    x = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.floor((y + 1.0) / 2.0 * mu + 0.5).astype(np.int64)


def pre_emphasis(audio: np.ndarray, coef: float) -> np.ndarray:
    """x[t] - coef * x[t-1] (x[-1] = 0): tilts the spectrum up, so that the vocoder's white
    mu-law noise, tilted back down by `de_emphasis`, hides under the speech (noise shaping)."""
    audio = np.asarray(audio, dtype=np.float32)
    if coef == 0.0:
        return audio
    return np.concatenate([audio[:1], audio[1:] - coef * audio[:-1]]).astype(np.float32)


def de_emphasis(audio: np.ndarray, coef: float, last: float = 0.0) -> tuple[np.ndarray, float]:
    """The inverse of `pre_emphasis`, y[t] = x[t] + coef * y[t-1], resumable chunk by chunk:
    returns (y, y[-1]) and takes the previous chunk's y[-1] as ``last``. Not clipped: the
    vocoder runtime limits what it gives out (`soft_limit`)."""
    audio = np.asarray(audio, dtype=np.float32)
    if coef == 0.0 or len(audio) == 0:
        return audio, (float(audio[-1]) if len(audio) else last)
    import scipy.signal  # a second to import: only the pre-emphasis vocoder needs it

    y, _ = scipy.signal.lfilter([1.0], [1.0, -coef], audio, zi=[coef * last])
    return y.astype(np.float32), float(y[-1])


def mu_law_decode(classes, n_classes: int = 256):
    """Integer classes -> float audio in [-1, 1] (numpy float32 or torch float)."""
    mu = n_classes - 1
    if _is_tensor(classes):
        import torch

        y = classes.float() / mu * 2.0 - 1.0
        return torch.sign(y) * ((1.0 + mu) ** y.abs() - 1.0) / mu
    y = np.asarray(classes, dtype=np.float64) / mu * 2.0 - 1.0
    return (np.sign(y) * ((1.0 + mu) ** np.abs(y) - 1.0) / mu).astype(np.float32)
