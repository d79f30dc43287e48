"""Linear prediction from the mel: the vocoder models only the excitation (ExcitNet, LPCNet).

Speech is an excitation through a slowly changing all-pole filter 1 / A(z), the spectral
envelope. The mel already carries that envelope, so per frame this module turns the mel into
prediction coefficients a_1..a_p, with no generated sample involved:

    mel -> amplitudes -> filterbank pseudo-inverse -> power spectrum -> autocorrelation
        -> lag window, white-noise correction -> Levinson-Durbin -> a (frames, p)

In training the WaveNet sees the residual e[t] = s[t] - sum_k a_k s[t-k] instead of the audio;
at inference its samples are an excitation that the synthesis filter s[t] = e[t] + sum_k a_k
s[t-k] turns back into speech. The network is left with the pitch pulses and the noise, which
are far easier to learn than the formants, and its errors come out shaped like the speech
spectrum. The kernels are untouched: they generate the excitation's classes exactly as before,
and the filter runs after them, chunk by chunk, carrying its last p samples.

Layout: mel (frames, n_mels), coefficients (frames, p), audio (T,) with T = frames * hop.
"""

from __future__ import annotations

import numpy as np

from tts.audio import DEFAULT_AUDIO, AudioConfig, mel_amplitude, mel_pinv
from tts._numba import numba  # caches compiled code in the user cache folder

LAG_WINDOW_HZ = 60.0  # Gaussian lag window: smooths the envelope over pitch harmonics
WHITE_NOISE = 1e-4  # added to r[0] (-40 dB): keeps Levinson-Durbin well conditioned


def lpc_from_mel(mel: np.ndarray, order: int, config: AudioConfig = DEFAULT_AUDIO) -> np.ndarray:
    """Prediction coefficients per mel frame, (frames, order) float32; s[t] ~ sum_k a[k-1] s[t-k]."""
    mel = np.asarray(mel, dtype=np.float64)
    magnitude = np.maximum(mel_pinv(config).astype(np.float64) @ mel_amplitude(mel, config).T.astype(np.float64), 0.0)
    r = np.fft.irfft(magnitude**2, n=config.n_fft, axis=0)[: order + 1].T  # (frames, order + 1)
    lags = np.arange(order + 1)
    r = r * np.exp(-0.5 * (2 * np.pi * LAG_WINDOW_HZ * lags / config.sample_rate) ** 2)
    r[:, 0] = r[:, 0] * (1.0 + WHITE_NOISE) + 1e-12
    return levinson(r).astype(np.float32)


def levinson(r: np.ndarray) -> np.ndarray:
    """Levinson-Durbin on autocorrelations (frames, p + 1) -> prediction coefficients (frames, p)."""
    frames, p = r.shape[0], r.shape[1] - 1
    a = np.zeros((frames, p))
    err = r[:, 0].copy()
    for i in range(p):
        k = (r[:, i + 1] - np.einsum("fj,fj->f", a[:, :i], r[:, i:0:-1])) / err
        a[:, :i] = a[:, :i] - k[:, None] * a[:, i - 1::-1][:, :i]
        a[:, i] = k
        err = err * (1.0 - k * k)
    return a


def lpc_residual(audio: np.ndarray, coefficients: np.ndarray, hop: int, history: np.ndarray | None = None
                 ) -> np.ndarray:
    """The excitation e[t] = s[t] - sum_k a_k(frame of t) s[t-k] of audio (frames * hop,), with
    ``history`` the p samples before it (zeros by default)."""
    p = coefficients.shape[1]
    past = np.zeros(p, np.float32) if history is None else np.asarray(history, np.float32)
    padded = np.concatenate([past, np.asarray(audio, np.float32)])
    lagged = np.stack([padded[p - k: len(padded) - k] for k in range(1, p + 1)], axis=1)  # (T, p)
    per_sample = np.repeat(coefficients, hop, axis=0)[: len(audio)]  # (T, p)
    return (padded[p:] - np.einsum("tk,tk->t", lagged, per_sample)).astype(np.float32)


def lpc_synthesis(excitation: np.ndarray, coefficients: np.ndarray, hop: int, history: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `lpc_residual`, resumable: returns (audio, its last p samples, the next
    chunk's ``history``). Not clipped: the vocoder runtime limits what it gives out
    (`tts.audio.soft_limit`), so that a loud peak bends rather than flattens."""
    p = coefficients.shape[1]
    past = np.zeros(p, np.float64) if history is None else np.asarray(history, np.float64)
    out = _synthesize(np.asarray(excitation, np.float64), np.asarray(coefficients, np.float64), hop, past)
    return out[p:].astype(np.float32), out[-p:].copy()


@numba.njit(cache=True)
def _synthesize(excitation, coefficients, hop, past):
    p = coefficients.shape[1]
    out = np.empty(p + len(excitation))
    out[:p] = past
    for t in range(len(excitation)):
        a = coefficients[t // hop]
        acc = excitation[t]
        for k in range(p):
            acc += a[k] * out[p + t - 1 - k]
        out[p + t] = acc
    return out


def mu_law_tables(classes: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(decoded (classes,), bounds (classes - 1,)) float64: each class's value, and the values
    between classes: class c holds the values from bounds[c - 1] (exclusive) to bounds[c]
    (inclusive), so a value's class is ``np.searchsorted(bounds, value)``, the same class in
    every kernel (a comparison, no logarithm to round differently)."""
    from tts.audio import mu_law_decode

    decoded = mu_law_decode(np.arange(classes), classes).astype(np.float64)
    bounds = mu_law_decode(np.arange(classes - 1) + 0.5, classes).astype(np.float64)
    return decoded, bounds


def noisy_excitation(audio: np.ndarray, coefficients: np.ndarray, hop: int, history: np.ndarray,
                     noise: np.ndarray, start_class: int, classes: int = 256
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training pairs with the network's own kind of errors injected (LPCNet's noise injection).

    Runs the synthesis loop the engine runs, but on noisy excitation classes: per sample t,
    the prediction p[t] comes from the *noisy* past signal, the target is the class of
    s[t] - p[t] (what undoes the drift so far), and the class fed back is that target plus
    ``noise[t]`` (integer classes, clipped to the range), whose decoded value extends the
    noisy signal. The network thus learns to steer back from errors it will make when it runs
    free. With zero noise this is the engine's own loop with the quantizer inside.

    audio (T,) with ``coefficients`` (frames, p), p >= 0 (p = 0: the network models the
    signal itself, no prediction); ``history``: the p clean samples before the audio.
    Returns (targets, inputs, signal, prediction), int64 (T,): the class of sample t, the
    noisy class of sample t-1 that the network sees at t (``start_class`` at t = 0), and
    the classes of the signal s[t-1] (the noisy one; the history's last sample at t = 0) and
    of the prediction p[t] at t: LPCNet's inputs (`WaveNetConfig.lpc_inputs`).
    """
    decoded, bounds = mu_law_tables(classes)
    return _noisy_excitation(np.asarray(audio, np.float64), np.asarray(coefficients, np.float64), hop,
                             np.asarray(history, np.float64), np.asarray(noise, np.int64), decoded, bounds,
                             start_class)


@numba.njit(cache=True)
def _noisy_excitation(audio, coefficients, hop, history, noise, decoded, bounds, start_class):
    p = coefficients.shape[1]
    top = len(decoded) - 1
    signal = np.empty(p + len(audio))
    signal[:p] = history
    targets = np.empty(len(audio), np.int64)
    inputs = np.empty(len(audio), np.int64)
    signal_classes = np.empty(len(audio), np.int64)
    predictions = np.empty(len(audio), np.int64)
    previous = start_class
    for t in range(len(audio)):
        a = coefficients[t // hop]
        prediction = 0.0
        for k in range(p):
            prediction += a[k] * signal[p + t - 1 - k]
        target = np.searchsorted(bounds, audio[t] - prediction)
        noisy = min(top, max(0, target + noise[t]))
        targets[t], inputs[t] = target, previous
        signal_classes[t] = np.searchsorted(bounds, signal[p + t - 1]) if p else start_class
        predictions[t] = np.searchsorted(bounds, prediction)
        signal[p + t] = prediction + decoded[noisy]
        previous = noisy
    return targets, inputs, signal_classes, predictions
