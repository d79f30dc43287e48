"""The metric code of the evaluation, on plain arrays: word errors, mel-cepstral distortion,
periodicity, level against the mel asked for, speech duration, attention checks.

Layouts as everywhere in the engine: audio (T,) float32 at the AudioConfig's rate, mel
(frames, n_mels) normalized to [0, 1], alignment (decoder steps, symbols).
"""

from __future__ import annotations

import math

import numpy as np

from tts.audio import DEFAULT_AUDIO, AudioConfig, mel_basis

MCD_ORDER = 24  # c1..c24: the usual order for 16 kHz speech (c0, the energy, is left out)
# 10 / ln 10 * sqrt(2): MCD's constant for cepstra of the natural log of the amplitude.
MCD_CONSTANT = 10.0 / math.log(10.0) * math.sqrt(2.0)
SPEECH_TOP_DB = 40.0  # what counts as speech when measuring a duration: within 40 dB of the peak
PITCH_HZ = (60.0, 400.0)  # the lags where a speaking voice's period lies
PERIODICITY_FRAME_S = 0.04  # two periods of the lowest pitch
PERIODICITY_TOP_DB = 30.0  # frames within 30 dB of the loudest: speech, not pauses
# The level check's three frequency ranges (Hz): below 500 Hz the voicing and the lowest
# harmonics, 0.5-2 kHz the first two formants, above 2 kHz the higher formants, frication and bursts.
LEVEL_EDGES_HZ = (500.0, 2000.0)
LEVEL_RANGES = ("low", "mid", "high")
# Each range's key in a report and its row's label ("level dB, 0.5-2 kHz"), one decimal.
_KHZ = [f"{edge / 1000:g}" for edge in LEVEL_EDGES_HZ]
LEVEL_ROWS = [(f"level_{name}", f"level dB, {span} kHz", 1)
              for name, span in zip(LEVEL_RANGES, [f"< {_KHZ[0]}", f"{_KHZ[0]}-{_KHZ[1]}", f"> {_KHZ[1]}"])]


# --- uncertainty ---------------------------------------------------------------------------

BOOTSTRAP_ROUNDS = 2000


def bootstrap_interval(statistic, n: int, level: float = 0.95, rounds: int = BOOTSTRAP_ROUNDS,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of ``statistic(indices)`` over ``n`` lines: lines
    resampled with replacement ``rounds`` times; ``statistic`` takes a (rounds, n) array of
    line indices and returns one value per round."""
    if n < 1:
        return float("nan"), float("nan")
    draws = np.asarray(statistic(np.random.default_rng(seed).integers(0, n, (rounds, n))), np.float64)
    lo, hi = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def wer_statistic(errors, words):
    """For `bootstrap_interval`: corpus WER (all errors over all words) of resampled lines."""
    errors, words = np.asarray(errors, np.float64), np.asarray(words, np.float64)
    return lambda idx: errors[idx].sum(axis=1) / np.maximum(words[idx].sum(axis=1), 1)


def mean_statistic(values):
    values = np.asarray(values, np.float64)
    return lambda idx: values[idx].mean(axis=1)


# --- words ---------------------------------------------------------------------------------

def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions + deletions + insertions turning ``reference`` into ``hypothesis``."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i]
        for j, hyp in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def corpus_wer(pairs: list[tuple[list[str], list[str]]]) -> float:
    """Word error rate over many (reference, hypothesis) pairs: all errors over all reference
    words, so long lines weigh more (as jiwer and the Whisper paper count)."""
    words = sum(len(ref) for ref, _ in pairs)
    if words == 0:
        return float("nan")
    return sum(word_errors(ref, hyp) for ref, hyp in pairs) / words


# --- spectra ---------------------------------------------------------------------------------

def floor_amplitude(config: AudioConfig = DEFAULT_AUDIO) -> float:
    """The mel amplitude that the engine's normalized mel maps to 0 (1e-4 by default)."""
    return 10.0 ** ((config.min_level_db + config.ref_level_db) / 20.0)


def mel_cepstrum(audio: np.ndarray, config: AudioConfig = DEFAULT_AUDIO, order: int = MCD_ORDER) -> np.ndarray:
    """(T,) audio -> (frames, order) mel-cepstrum c1..c_order: the ``cepstrum`` of the natural
    log of the engine's mel amplitudes (80 Slaney bands of the 1024-point STFT magnitude,
    floored where the engine's mel is 0), the bands standing for the mel-warped frequency axis."""
    import librosa

    spec = np.abs(librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=config.n_fft,
                               hop_length=config.hop_length, win_length=config.win_length,
                               window="hann", center=True, pad_mode="reflect"))  # (F, frames)
    log_mel = np.log(np.maximum(mel_basis(config) @ spec, floor_amplitude(config)))  # (n_mels, frames)
    return cepstrum(log_mel.T, order)


def cepstrum(log_bands: np.ndarray, order: int = MCD_ORDER) -> np.ndarray:
    """(frames, bands) natural-log amplitudes -> (frames, order) c1..c_order with
    ``log S(w) = c0 + sum_m c_m cos(m w)`` at the bands' centres w = pi (k + 1/2) / bands:
    SPTK's convention (the cepstrum of a minimum-phase filter), which MCD's constant assumes,
    so that MCD is the RMS distance in dB between the two smoothed log spectra. That is the
    orthonormal DCT-II times sqrt(2 / bands); MFCCs (dB, unscaled) would read ~6x larger."""
    from scipy.fft import dct

    bands = log_bands.shape[1]
    return (dct(np.asarray(log_bands, dtype=np.float64), type=2, norm="ortho", axis=1)[:, 1:order + 1]
            * math.sqrt(2 / bands))


def mcd_aligned(a: np.ndarray, b: np.ndarray) -> float:
    """Mel-cepstral distortion in dB between cepstra a (N, D) and b (M, D), averaged over the
    frame pairs of their DTW path (Euclidean frame distance, librosa's default steps)."""
    import librosa

    if len(a) == 0 or len(b) == 0:
        return float("nan")
    _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")  # path: (K, 2) pairs (i, j)
    diff = a[path[:, 0]] - b[path[:, 1]]
    return float(MCD_CONSTANT * np.mean(np.sqrt(np.sum(diff * diff, axis=1))))


def mcd(audio: np.ndarray, reference: np.ndarray, config: AudioConfig = DEFAULT_AUDIO) -> float:
    """DTW-aligned mel-cepstral distortion (dB) of ``audio`` against ``reference``, both
    trimmed to their speech (silence at the ends would only add frames of agreement)."""
    return mcd_aligned(mel_cepstrum(trim(audio, config), config), mel_cepstrum(trim(reference, config), config))


def periodicity(audio: np.ndarray, config: AudioConfig = DEFAULT_AUDIO) -> float:
    """How periodic the speech is: over the frames within PERIODICITY_TOP_DB of the loudest
    (40 ms, one hop apart), the mean of each frame's peak normalized cross-correlation with
    itself one pitch period later (lags of PITCH_HZ; each lag's overlap normalized by its own
    energies, so low voices are not penalized). Near 1 for clean voiced speech, near 0 for
    noise: a vocoder whose voiced sounds come out breathy or rough scores below its teacher
    on the same mel."""
    x = np.asarray(audio, dtype=np.float64)
    n, sr = int(PERIODICITY_FRAME_S * config.sample_rate), config.sample_rate
    if x.size < n or not np.any(x):
        return float("nan")
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::config.hop_length]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.einsum("ij,ij->i", frames, frames)
    loud = frames[energy > energy.max() * 10 ** (-PERIODICITY_TOP_DB / 10)]
    lags = np.arange(int(sr / PITCH_HZ[1]), int(sr / PITCH_HZ[0]) + 1)
    products = np.fft.irfft(np.abs(np.fft.rfft(loud, 2 * n)) ** 2)[:, lags]  # sum x[t] x[t + lag]
    cumulative = np.cumsum(loud * loud, axis=1)
    head = cumulative[:, n - 1 - lags]  # energy of x[0 .. n - lag)
    tail = cumulative[:, -1:] - np.concatenate([np.zeros((len(loud), 1)), cumulative], axis=1)[:, lags]
    return float(np.mean(np.max(products / np.sqrt(np.maximum(head * tail, 1e-30)), axis=1)))


def level_differences(pairs, config: AudioConfig = DEFAULT_AUDIO) -> dict[str, float]:
    """How loud a vocoder renders each frequency range against the mel it was given: for
    (audio, mel) pairs (one sentence's audio and its mel each), the mean over speech frames
    (within SPEECH_TOP_DB of the pair's loudest) of the audio's own mel minus the given mel,
    in dB, over the bands whose centre lies in each of LEVEL_RANGES. Negative: quieter than
    asked. A WaveNet that samples too sharply keeps the periodic part of speech and drops the
    noise inside it: "low" holds while "mid" and "high" come out quiet, and a recognizer then
    mishears the consonants. A pair whose audio is not the mel's length (frames * hop
    samples) is left out; NaN where none is left."""
    from tts.audio import mel_spectrogram

    basis = mel_basis(config)
    centres = np.fft.rfftfreq(config.n_fft, 1.0 / config.sample_rate)[basis.argmax(axis=1)]
    ranges = np.searchsorted(LEVEL_EDGES_HZ, centres)  # 0, 1, 2 for each band
    db_per_unit = -config.min_level_db
    sums, frames = np.zeros(len(LEVEL_RANGES)), 0
    for audio, mel in pairs:
        mel = np.asarray(mel, np.float64)
        if len(mel) == 0 or len(audio) != len(mel) * config.hop_length:
            continue
        got = mel_spectrogram(audio, config)[:len(mel)].astype(np.float64)
        level = mel.mean(axis=1) * db_per_unit
        speech = level >= level.max() - SPEECH_TOP_DB
        diff = (got[speech] - mel[speech]) * db_per_unit  # (speech frames, n_mels)
        sums += [diff[:, ranges == r].mean(axis=1).sum() for r in range(len(LEVEL_RANGES))]
        frames += int(speech.sum())
    return {name: float(total / frames) if frames else float("nan") for name, total in zip(LEVEL_RANGES, sums)}


# --- time ------------------------------------------------------------------------------------

def trim(audio: np.ndarray, config: AudioConfig = DEFAULT_AUDIO, top_db: float = SPEECH_TOP_DB) -> np.ndarray:
    """The audio from the first to the last frame within ``top_db`` of its loudest frame."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0 or not np.any(audio):
        return audio[:0]
    _, (start, end) = librosa.effects.trim(audio, top_db=top_db, frame_length=config.win_length,
                                           hop_length=config.hop_length)
    return audio[start:end]


def speech_seconds(audio: np.ndarray, config: AudioConfig = DEFAULT_AUDIO) -> float:
    """Seconds from the first to the last sound: durations compare speech, not padding."""
    return len(trim(audio, config)) / config.sample_rate


def attention_checks(alignment: np.ndarray) -> dict:
    """What the attention of one sentence did: alignment (steps, symbols), the last symbol
    being EOS. ``reached_end``: some step attends (argmax) the last symbol; ``moved_back``:
    the attended symbol ever decreases from one step to the next; ``max_jump``: the most
    symbols skipped in one step."""
    alignment = np.asarray(alignment)
    if alignment.ndim != 2 or alignment.shape[0] == 0 or alignment.shape[1] == 0:
        return {"reached_end": False, "moved_back": False, "max_jump": 0, "steps": 0}
    path = alignment.argmax(axis=1)  # (steps,)
    steps = np.diff(path)
    return {"reached_end": bool(path.max() == alignment.shape[1] - 1),
            "moved_back": bool(np.any(steps < 0)),
            "max_jump": int(steps.max()) if steps.size else 0,
            "steps": int(alignment.shape[0])}
