"""Learning which frames say which symbol: the pieces of an unsupervised aligner.

The parallel acoustic model (tts/parallel_model.py) learns its durations from an aligner
trained with it, as in RAD-TTS ("One TTS Alignment To Rule Them All", Badlani et al. 2022):

- `beta_binomial_prior`: a soft diagonal prior over (frames, symbols), which the aligner's
  scores are added to, so its first alignments are near the diagonal.
- `forward_sum_loss`: the likelihood of the mel under every monotonic alignment that visits
  each symbol in order, summed (CTC's forward algorithm with the symbols as the target).
- `monotonic_alignment_search`: the single most likely such alignment (a Viterbi path), whose
  frames per symbol are the durations.

Layout: (B, T, N) for frames x symbols, as everywhere in the engine.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tts.layers import length_mask
from tts._numba import numba  # caches compiled code in the user cache folder

# The log-probability of CTC's blank, which the forward-sum pads every frame with: a frame
# that fits no symbol well can go to it rather than distort the alignment.
BLANK_LOGPROB = -1.0
_MASKED = -1e4  # a log-probability that never wins, finite so that no gradient turns NaN


def beta_binomial_prior(text_lengths: torch.Tensor, mel_lengths: torch.Tensor, n_text: int, n_frames: int,
                        scaling: float = 1.0) -> torch.Tensor:
    """log P(symbol n | frame t), (B, T, N): for frame t of T, a beta-binomial over the
    symbols 0..N-1 with a = scaling * (t + 1), b = scaling * (T - t), whose mass moves
    from the first symbol to the last as t goes from the first frame to the last. Zero
    (log 1) outside each utterance."""
    n = text_lengths.to(torch.float64)[:, None, None] - 1  # (B, 1, 1) the binomial's trials
    t = torch.arange(n_frames, dtype=torch.float64, device=text_lengths.device)[None, :, None]
    k = torch.arange(n_text, dtype=torch.float64, device=text_lengths.device)[None, None, :]
    a = scaling * (t + 1)
    b = scaling * (mel_lengths.to(torch.float64)[:, None, None] - t)
    # log C(n, k) + log B(k + a, n - k + b) - log B(a, b), with log B(x, y) = lgamma x + lgamma y - lgamma(x + y)
    lbeta = lambda x, y: torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)  # noqa: E731
    kk, nk = k.clamp(max=n), (n - k).clamp(min=0)
    log_pmf = (torch.lgamma(n + 1) - torch.lgamma(kk + 1) - torch.lgamma(nk + 1)
               + lbeta(kk + a, nk + b.clamp(min=1e-3)) - lbeta(a, b.clamp(min=1e-3)))
    inside = length_mask(mel_lengths, n_frames)[:, :, None] & length_mask(text_lengths, n_text)[:, None, :]
    return torch.where(inside, log_pmf, torch.zeros_like(log_pmf)).float()


def forward_sum_loss(log_probs: torch.Tensor, text_lengths: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
    """-log of the summed probability of all monotonic paths through the symbols, per symbol,
    averaged over the batch. log_probs (B, T, N): the aligner's log P(symbol | frame)."""
    B, T, N = log_probs.shape
    padded = F.pad(log_probs.float(), (1, 0), value=BLANK_LOGPROB)  # (B, T, 1 + N), blank first
    columns = length_mask(text_lengths + 1, N + 1)[:, None, :]
    padded = torch.log_softmax(padded.masked_fill(~columns, _MASKED), dim=-1)
    targets = torch.arange(1, N + 1, device=log_probs.device)[None].expand(B, N)
    return F.ctc_loss(padded.transpose(0, 1), targets, mel_lengths, text_lengths, blank=0,
                      reduction="mean", zero_infinity=True)


@numba.njit(cache=True)
def _viterbi(log_probs: np.ndarray) -> np.ndarray:
    """The most likely monotonic path through (T, N) log-probabilities that starts on the
    first symbol, ends on the last, and moves on by at most one symbol per frame; T >= N."""
    T, N = log_probs.shape
    value = np.full((T, N), -np.inf, dtype=np.float64)
    value[0, 0] = log_probs[0, 0]
    for t in range(1, T):
        for n in range(min(N, t + 1)):
            stay = value[t - 1, n]
            move = value[t - 1, n - 1] if n > 0 else -np.inf
            value[t, n] = max(stay, move) + log_probs[t, n]
    path = np.zeros((T, N), dtype=np.float32)
    n = N - 1
    for t in range(T - 1, -1, -1):
        path[t, n] = 1.0
        if t > 0 and n > 0 and (n == t or value[t - 1, n - 1] > value[t - 1, n]):
            n -= 1
    return path


def monotonic_alignment_search(log_probs: torch.Tensor, text_lengths: torch.Tensor,
                               mel_lengths: torch.Tensor) -> torch.Tensor:
    """The hard alignment (B, T, N), one symbol per frame, each symbol at least one frame,
    in order. Every utterance needs at least as many frames as symbols."""
    B, T, N = log_probs.shape
    if bool((mel_lengths < text_lengths).any()):
        raise ValueError("an utterance has fewer mel frames than symbols: it cannot be aligned")
    scores = log_probs.detach().float().cpu().numpy()
    hard = np.zeros((B, T, N), dtype=np.float32)
    for b, (t, n) in enumerate(zip(mel_lengths.tolist(), text_lengths.tolist())):
        hard[b, :t, :n] = _viterbi(np.ascontiguousarray(scores[b, :t, :n]))
    return torch.from_numpy(hard).to(log_probs.device)


def durations_to_alignment(durations: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
    """Frames per symbol (B, N) int -> the hard alignment (B, T, N) that gives symbol n the
    frames [start_n, start_n + durations_n); T = the longest total unless given."""
    ends = durations.long().cumsum(dim=-1)  # (B, N)
    starts = ends - durations.long()
    T = int(ends[:, -1].max()) if n_frames is None else n_frames
    t = torch.arange(T, device=durations.device)[None, :, None]
    return ((t >= starts[:, None, :]) & (t < ends[:, None, :])).float()
