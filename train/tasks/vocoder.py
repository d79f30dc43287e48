"""Training the WaveNet vocoder (vocoder/wavenet.py): mel -> 8-bit mu-law audio, teacher-forced.

Items are random crops of ``segment_frames`` mel frames with their ``segment_frames * hop``
audio samples, from the same `FeatureCache` as the acoustic task (the cached waveform is
aligned with its mel frame by frame). A crop's start is drawn from (seed, epoch, index)
alone, so every epoch sees new crops, yet a resumed run draws exactly the crops the
uninterrupted run would have, whichever DataLoader worker reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from tts.train.data import DatasetError, FeatureCache, aligned_features, compute_features, read_metadata
from tts.train.task import Task
from tts.train.tasks.mel import build_cache, open_cache, split_clips
from tts.audio import DEFAULT_AUDIO, AudioConfig, mu_law_decode, mu_law_encode
from tts.files import replacing
from tts.voice import VoiceError, load_model, read_config, save_model
from tts.vocoder.lpc import lpc_from_mel, noisy_excitation
from tts.vocoder.voicing import VoicingConfig, VoicingDetector, fit_voicing, pitch_correlation
from tts.vocoder.wavenet import START_CLASS, WaveNet, WaveNetConfig, model_to_signal, signal_to_model

# The frame-rate network's parameters, mel in, each layer's conditioning out (`trains`).
CONDITIONING = ("frame_conv.", "cond_blocks.", "upsample_convs.", "cond_proj.")
CONTEXT_SAMPLES = 64  # audio before a crop that its first samples' predictor looks back on


@dataclass(frozen=True)
class VocoderTaskConfig:
    model: WaveNetConfig = field(default_factory=WaveNetConfig)
    segment_frames: int = 40  # 40 frames = 8000 samples = 0.5 s per crop
    eval_clips: int = 8  # the corpus's last clips, held out
    sample_frames: int = 8  # frames of the evaluation's generated sample, vocoded as the engine speaks
    cache_dir: str = ""  # feature cache; "" puts it in the data folder's .cache
    trim_db: float | None = 40.0  # see AttentionTaskConfig
    # The training forward: "time-major" (WaveNet.forward, matrix products over all samples)
    # or "reference" (WaveNet.forward_reference, conv1d as the definition reads; the same
    # numbers, slower: the baseline tts.train.bench compares against).
    forward: str = "time-major"
    # Noise injection (LPCNet): the classes fed back to the network in training carry noise of
    # Laplacian shape whose scale, per frame, is drawn from noise * u^2 (u uniform in [0, 1]),
    # in mu-law classes, and the targets undo the drift it causes (vocoder.lpc.noisy_excitation).
    # 0: teacher forcing on the clean signal. LPCNet trains with 4.
    noise: float = 0.0
    # Ground-truth-aligned mels (as Tacotron 2 trained its WaveNet): a voice folder whose
    # parallel acoustic model makes the mel each clip trains on, said on the durations its
    # aligner finds in the clip's own mel, so that the frames line up with the real audio.
    # The WaveNet then learns to make speech from the mels synthesis gives it, smoothing and
    # all; the predictor's coefficients come from the same mel, as in synthesis. "": each
    # clip's own mel.
    aligned_mels: str = ""
    # Spectral fine-tuning (as the MWDLP vocoder trains): beside the cross-entropy, a sample is
    # drawn from each teacher-forced distribution (Gumbel-max, its gradient straight through
    # the softmax), put back into the audio (the past is the true one, so the predictor and the
    # pre-emphasis add the same as they do for the true sample), and the audio's spectra are
    # compared with the true audio's at several resolutions; and an L1 between each softmax
    # and its one-hot target. This weight scales the two; 0 trains on the cross-entropy alone.
    spectral: float = 0.0
    # LPCNet's augmentation, on this share of the training crops, so that the WaveNet meets
    # more voices than its corpus's one: the clip's speed changed by a number of semitones drawn
    # from augment_semitones (pitch and formants move together; the predictor follows the
    # formants, the network learns excitation at other pitches), a random second-order filter
    # and a gain (AUGMENT_FILTER, AUGMENT_GAIN_DB), and the mel and the predictor's coefficients
    # made anew from the result. The held-out loss stays on the clean clips. 0: none.
    augment: float = 0.0
    augment_semitones: tuple[float, float] = (-3.0, 9.0)
    # What the run trains: "all", or "conditioning": only the frame-rate network that turns
    # the mel into each layer's conditioning (CONDITIONING), the sample-rate network kept as
    # the voice had it (a new speaker's mels, the excitation the network already draws well).
    trains: str = "all"

    def __post_init__(self):
        for name in ("segment_frames", "eval_clips", "sample_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.spectral <= 100.0:
            raise ValueError(f"spectral must be in [0, 100], got {self.spectral}")
        if not 0.0 <= self.augment <= 1.0:
            raise ValueError(f"augment must be a share of the crops in [0, 1], got {self.augment}")
        low, high = self.augment_semitones
        if not -12.0 <= low <= high <= 12.0:
            raise ValueError(f"augment_semitones must be (low, high) with -12 <= low <= high <= 12, "
                             f"got {list(self.augment_semitones)}")
        if self.augment and self.aligned_mels:
            raise ValueError("augment makes each crop's mel from its changed audio; it cannot train "
                             "on aligned_mels")
        if not 0.0 <= self.noise <= 32.0:
            raise ValueError(f"noise must be in [0, 32] classes, got {self.noise}")
        if self.trains not in ("all", "conditioning"):
            raise ValueError(f"trains must be all or conditioning, got {self.trains!r}")
        if self.forward not in ("time-major", "reference"):
            raise ValueError(f"forward must be time-major or reference, got {self.forward!r}")
        if self.model.n_mels != DEFAULT_AUDIO.n_mels or self.model.hop_length != DEFAULT_AUDIO.hop_length:
            raise ValueError(f"model.n_mels and model.hop_length must match the audio config "
                             f"({DEFAULT_AUDIO.n_mels}, {DEFAULT_AUDIO.hop_length}), got "
                             f"({self.model.n_mels}, {self.model.hop_length})")


# Spectral fine-tuning's resolutions at 16 kHz: (n_fft, hop, window), the mel's own first.
STFT_RESOLUTIONS = ((1024, 200, 800), (512, 100, 400), (256, 50, 200), (128, 25, 100))
MAGNITUDE_FLOOR = 1e-5  # -100 dB, the mel's floor


def multi_resolution_stft_loss(audio: torch.Tensor, target: torch.Tensor,
                               resolutions=STFT_RESOLUTIONS) -> torch.Tensor:
    """Spectral convergence plus log-magnitude L1 between two batches of audio (B, T), the
    mean over ``resolutions``. Convergence is taken over the whole batch, so that a crop of
    silence does not divide by its own near-zero spectrum."""
    total = audio.new_zeros(())
    for n_fft, hop, window in resolutions:
        w = torch.hann_window(window, device=audio.device, dtype=audio.dtype)
        spectra = [torch.stft(x, n_fft, hop, window, w, return_complex=True).abs().clamp_min(MAGNITUDE_FLOOR)
                   for x in (audio, target)]
        convergence = torch.linalg.norm(spectra[1] - spectra[0]) / torch.linalg.norm(spectra[1])
        total = total + convergence + (spectra[1].log() - spectra[0].log()).abs().mean()
    return total / len(resolutions)


def spectral_terms(logits: torch.Tensor, classes: torch.Tensor, wave: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral fine-tuning's two terms (VocoderTaskConfig.spectral) for teacher-forced
    ``logits`` (B, T, C) of target ``classes`` (B, T) in crops of audio ``wave`` (B, T):
    (the multi-resolution STFT loss of the audio with a drawn sample in place of each true
    one, the mean L1 between each softmax and its one-hot target).

    Every sample is drawn given the true past, so the predictor (or pre-emphasis) adds to the
    drawn excitation what it adds to the true one: the drawn audio is the true audio plus the
    difference of the two excitations, and the whole crop stays one parallel pass."""
    n_classes = logits.shape[-1]
    values = mu_law_decode(torch.arange(n_classes, device=logits.device), n_classes).to(logits.dtype)  # (C,)
    uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
    soft = torch.softmax(logits + gumbel, dim=-1)
    hard = F.one_hot(soft.argmax(-1), n_classes).to(soft.dtype)
    drawn = (hard + soft - soft.detach()) @ values  # (B, T), the value of the drawn class, gradient of the soft
    audio = wave + drawn - values[classes]
    target = F.one_hot(classes, n_classes).to(logits.dtype)
    l1 = (torch.softmax(logits, dim=-1) - target).abs().sum(-1).mean()
    return multi_resolution_stft_loss(audio, wave), l1


AUGMENT_FILTER = 0.375  # each coefficient of the random second-order filter, uniform in +-this (LPCNet's)
AUGMENT_GAIN_DB = (-12.0, 3.0)  # the gain, uniform in dB; a louder clip is brought back under AUGMENT_PEAK
AUGMENT_PEAK = 0.99


def augmented(wave: np.ndarray, rng: np.random.Generator, semitones: tuple[float, float],
              audio: AudioConfig = DEFAULT_AUDIO) -> tuple[np.ndarray, np.ndarray]:
    """A clip's audio as another speaker might have said it, and its mel: (mel (frames,
    n_mels), wave (frames * hop,)), aligned as the feature cache aligns them. The speed changes
    by 2^(s/12) for s drawn from ``semitones`` (played faster: higher and shorter), then a
    random second-order pole-zero filter and a gain."""
    import scipy.signal
    import soxr

    speed = 2.0 ** (rng.uniform(*semitones) / 12.0)
    wave = soxr.resample(wave.astype(np.float32), audio.sample_rate * speed, audio.sample_rate)
    zeros, poles = rng.uniform(-AUGMENT_FILTER, AUGMENT_FILTER, (2, 2))  # stable: |a1| < 1 + a2
    wave = scipy.signal.lfilter(np.r_[1.0, zeros], np.r_[1.0, poles], wave)
    wave = wave * 10.0 ** (rng.uniform(*AUGMENT_GAIN_DB) / 20.0)
    peak = np.abs(wave).max(initial=0.0)
    if peak > AUGMENT_PEAK:
        wave = wave * (AUGMENT_PEAK / peak)
    return aligned_features(wave, audio)


class Crops(torch.utils.data.Dataset):
    """One random crop per clip: mel (segment_frames, n_mels) and mu-law classes
    (segment_frames * hop,), with ``noise`` the noisy input classes too (see
    VocoderTaskConfig.noise), with ``wave`` the crop's audio too (spectral fine-tuning).
    Clips shorter than a crop are padded with silence."""

    def __init__(self, cache: FeatureCache, indices: list[int], segment_frames: int, seed: int = 0,
                 model: WaveNetConfig = WaveNetConfig(), noise: float = 0.0, mel_dir: Path | None = None,
                 wave: bool = False, augment: float = 0.0, semitones: tuple[float, float] = (0.0, 0.0)):
        self.cache, self.indices, self.segment_frames = cache, indices, segment_frames
        self.augment, self.semitones = augment, semitones  # VocoderTaskConfig.augment
        self.mel_dir = mel_dir  # each clip's mel from here (`aligned_mels`) instead of the cache's
        self.model = model  # what the classes stand for: the audio, pre-emphasized or its excitation
        self.noise, self.wave = noise, wave
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int, seed: int) -> None:
        self.epoch, self.seed = epoch, seed

    def __len__(self) -> int:
        return len(self.indices)

    def frames(self, i: int) -> int:
        return self.cache.entries[self.indices[i]]["frames"]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        hop, seg = self.cache.audio.hop_length, self.segment_frames
        clip = self.cache.entries[self.indices[i]]["id"]
        with np.load(self.cache.dir / f"{clip}.npz", allow_pickle=False) as f:
            mel, wave = f["mel"], f["wave"]
        if self.mel_dir is not None:
            mel = np.load(self.mel_dir / f"{clip}.npy", allow_pickle=False)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.augment and rng.random() < self.augment:
            mel, wave = augmented(wave, rng, self.semitones, self.cache.audio)
        start = rng.integers(0, max(0, len(mel) - seg) + 1)
        before = wave[max(0, start * hop - CONTEXT_SAMPLES):start * hop]
        mel = mel[start:start + seg]
        wave = wave[start * hop:(start + seg) * hop]
        if len(mel) < seg:  # silence: the mel floor is 0 and mu-law 0.0 is silence too
            mel = np.pad(mel, ((0, seg - len(mel)), (0, 0)))
            wave = np.pad(wave, (0, seg * hop - len(wave)))
        item = {"mel": mel, "wave": wave} if self.wave else {"mel": mel}
        if self.noise or self.model.lpc_inputs:  # LPCNet's inputs come from the loop, noisy or not
            return {**item, **self._noisy(wave, mel, before, np.random.default_rng([self.seed, self.epoch, i, 1]))}
        signal = signal_to_model(self.model, wave, mel, before)
        return {**item, "classes": mu_law_encode(signal, self.cache.audio.mu_law_classes)}

    def _noisy(self, wave: np.ndarray, mel: np.ndarray, before: np.ndarray, rng: np.random.Generator
               ) -> dict[str, np.ndarray]:
        """Targets and noisy inputs of one crop (with LPCNet's inputs, the classes of the noisy
        signal and of the prediction too); the noise scale is drawn per frame, as LPCNet does."""
        model, hop = self.model, self.cache.audio.hop_length
        if model.pre_emphasis:  # the network models the pre-emphasized audio, without a predictor
            wave = signal_to_model(model, wave, mel, before)
        order = model.lpc_order
        coefficients = lpc_from_mel(mel, order) if order else np.zeros((len(mel), 0), np.float32)
        history = np.concatenate([np.zeros(order, np.float32), before])[len(before):]  # the last p samples
        scale = np.repeat(self.noise * rng.random(len(mel)) ** 2, hop)  # (T,)
        u = rng.random((2, len(wave)))
        noise = np.floor(0.5 + scale * np.sqrt(0.5) * (np.log(u[0] + 1e-12) - np.log(u[1] + 1e-12))).astype(np.int64)
        targets, inputs, signal, prediction = noisy_excitation(wave, coefficients, hop, history, noise, START_CLASS,
                                                               self.cache.audio.mu_law_classes)
        if model.lpc_inputs:
            return {"classes": targets, "inputs": inputs, "signal_in": signal, "prediction_in": prediction}
        return {"classes": targets, "inputs": inputs}


def aligned_mels(cache: FeatureCache, voice_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Each clip's mel as the voice's parallel acoustic model says it on the durations its
    aligner finds in the clip's cached mel (ground-truth-aligned: frame for frame the real
    audio's), one ``ID.npy`` per clip in a folder of the cache named by the model's weights.
    Made once; clips with fewer frames than symbols, which the aligner cannot align, keep their
    own mel."""
    config = read_config(voice_dir)
    entry = config["models"]["acoustic"]
    if entry.get("kind") != "parallel":
        raise VoiceError(f"aligned_mels needs a voice whose acoustic model is the parallel kind; "
                         f"{voice_dir} has {entry.get('kind', '?')}")
    digest = hashlib.sha256((Path(voice_dir) / entry["weights"]).read_bytes()).hexdigest()[:16]
    out = cache.dir / f"aligned-{digest}"
    if (out / "done").is_file():  # every rank asks again in datasets(): no model to load then
        return out
    model = load_model(voice_dir, "acoustic", config=config)
    out.mkdir(parents=True, exist_ok=True)
    own = 0
    for entry in tqdm(cache.entries, desc="aligned mels", unit="clip", disable=not progress):
        path = out / f"{entry['id']}.npy"
        with np.load(cache.dir / f"{entry['id']}.npz", allow_pickle=False) as f:
            ids, mel = f["ids"].astype(np.int64), f["mel"]
        if len(mel) < len(ids):
            aligned, own = mel, own + 1
        else:
            with torch.no_grad():
                aligned = model(torch.from_numpy(ids)[None], torch.tensor([len(ids)]), torch.from_numpy(mel)[None],
                                torch.tensor([len(mel)]))["mel"][0].numpy()
        with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save would add ".npy"
            np.save(f, aligned.astype(np.float32))
    (out / "done").write_text(f"{len(cache.entries)} clips from {voice_dir}; {own} too short to align kept their own mel\n")
    return out


class VocoderTask(Task):
    name = "vocoder"
    config_class = VocoderTaskConfig
    train_defaults = {"batch_size": 8, "lr": 1e-3, "warmup_steps": 1000, "decay": "cosine", "ema": 0.9999,
                      "max_steps": 500_000, "grad_clip": 1.0, "eval_every": 5000, "checkpoint_every": 5000}
    unit = "samples"
    # The last layer's residual output feeds nothing (only its skip output does), yet the
    # layer keeps its residual conv so that every layer exports the same weights.
    find_unused_parameters = True

    def __init__(self, config: VocoderTaskConfig = VocoderTaskConfig()):
        super().__init__(config)
        self.voicing: VoicingDetector | None = None  # the start voice's, for the evaluation's samples

    def prepare(self, data_dir: Path) -> None:
        build_cache(data_dir, self.config.cache_dir, self.config.trim_db)
        if self.config.aligned_mels:
            aligned_mels(open_cache(data_dir, self.config.cache_dir, self.config.trim_db), self.config.aligned_mels)

    def build_model(self) -> WaveNet:
        model = WaveNet(self.config.model)
        if self.config.trains == "conditioning":
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name.startswith(CONDITIONING))
        return model

    def datasets(self, data_dir: Path) -> tuple[Crops, Crops]:
        cache = open_cache(data_dir, self.config.cache_dir, self.config.trim_db)
        train, held_out = split_clips(cache, self.config.eval_clips)
        seg = self.config.segment_frames
        model = self.config.model
        mel_dir = aligned_mels(cache, self.config.aligned_mels, progress=False) if self.config.aligned_mels else None
        # The held-out loss stays teacher-forced on the clean signal, comparable across runs.
        return (Crops(cache, train, seg, model=model, noise=self.config.noise, mel_dir=mel_dir,
                      wave=self.config.spectral > 0, augment=self.config.augment,
                      semitones=self.config.augment_semitones),
                Crops(cache, held_out, seg, model=model, mel_dir=mel_dir))

    def lengths(self, dataset: Crops) -> list[int]:
        return [min(dataset.frames(i), self.config.segment_frames) for i in range(len(dataset))]

    def collate(self, items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        batch = {"mel": torch.from_numpy(np.stack([it["mel"] for it in items])).float(),  # (B, frames, n_mels)
                 "classes": torch.from_numpy(np.stack([it["classes"] for it in items])).long()}  # (B, T)
        # Noise injection: what the network sees at t, else the class of t-1; LPCNet's inputs.
        for name in ("inputs", "signal_in", "prediction_in"):
            if name in items[0]:
                batch[name] = torch.from_numpy(np.stack([it[name] for it in items])).long()  # (B, T)
        if "wave" in items[0]:
            batch["wave"] = torch.from_numpy(np.stack([it["wave"] for it in items])).float()  # (B, T)
        return batch

    def units(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["classes"].numel()

    def loss(self, model: WaveNet, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        given = {name: batch.get(name) for name in ("inputs", "signal_in", "prediction_in")}
        reference = self.config.forward == "reference"
        if not self.config.spectral:
            return model.loss(batch["classes"], batch["mel"], reference=reference, **given), {}
        logits = model.teacher_logits(batch["classes"], batch["mel"], reference, **given)
        cross_entropy = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["classes"].reshape(-1))
        stft, l1 = spectral_terms(logits, batch["classes"], batch["wave"])
        return cross_entropy + self.config.spectral * (stft + l1), \
            {"cross_entropy": cross_entropy.detach(), "stft": stft.detach(), "l1": l1.detach()}

    @torch.no_grad()
    def evaluate(self, model: WaveNet, batches: Iterable[dict[str, torch.Tensor]], writer, step: int
                 ) -> dict[str, float]:
        """Held-out loss (teacher-forced), and a short sample on the first held-out crop, next
        to the real audio: made the way the engine speaks (`WaveNet.vocode`, with the voicing
        detector of the voice the run started from, where it has one)."""
        device = next(model.parameters()).device
        total, count, first = 0.0, 0, None
        for batch in batches:
            n = len(batch["mel"])
            given = {name: batch[name].to(device) for name in ("inputs", "signal_in", "prediction_in") if name in batch}
            total += float(model.loss(batch["classes"].to(device), batch["mel"].to(device), **given)) * n
            count += n
            first = batch if first is None else first
        metrics = {"loss": total / count}
        if writer is not None and first is not None:
            frames = self.config.sample_frames
            audio = model.vocode(first["mel"][0, :frames], seed=step, voicing=self.voicing)
            sr = DEFAULT_AUDIO.sample_rate
            writer.add_audio("eval/generated", torch.from_numpy(audio)[None], step, sample_rate=sr)
            real = mu_law_decode(first["classes"][0, :frames * self.config.model.hop_length].numpy())
            real = torch.from_numpy(model_to_signal(self.config.model, real, first["mel"][0, :frames].numpy())[0])
            writer.add_audio("eval/real", real[None], step, sample_rate=sr)
        return metrics

    def init_from(self, model: WaveNet, source: WaveNet) -> None:
        """The voice's WaveNet, or the same network grown: wider (more residual channels),
        given LPCNet's inputs, or more frame-rate blocks. What is new starts silent
        (`WaveNet.load_narrower`: zero embeddings, zero weights out of the new units, each
        new block's output conv at zero), so the grown network begins by saying exactly what
        the voice says."""
        grown = dataclasses.replace(model.config, lpc_inputs=source.config.lpc_inputs,
                                    cond_blocks=source.config.cond_blocks,
                                    residual_channels=source.config.residual_channels)
        if grown == source.config and model.config != source.config and \
                model.config.cond_blocks >= source.config.cond_blocks and \
                model.config.lpc_inputs >= source.config.lpc_inputs and \
                model.config.residual_channels >= source.config.residual_channels:
            missing = model.load_narrower(source)
            new = ("embedding_signal.", "embedding_prediction.") + tuple(
                f"cond_blocks.{i}." for i in range(source.config.cond_blocks, model.config.cond_blocks))
            assert all(key.startswith(new) for key in missing), missing
            return
        super().init_from(model, source)

    def from_voice(self, voice_dir: Path) -> None:
        config = read_config(voice_dir)
        self.voicing = load_model(voice_dir, "voicing", config=config) if "voicing" in config["models"] else None

    def export(self, model: WaveNet, voice_dir: Path) -> None:
        save_model(voice_dir, "vocoder", model, DEFAULT_AUDIO)


def fit_voicing_on_corpus(corpus: str | os.PathLike, audio: AudioConfig, strength: float = 1.0,
                          clips: int = 200) -> VoicingDetector:
    """A detector fitted on the first ``clips`` clips of an LJ Speech-layout corpus, with the
    features the vocoder trains on (`tts.train.data.compute_features`)."""
    mels, correlations = [], []
    for clip in tqdm(read_metadata(corpus)[:clips], desc="voicing", unit="clip"):
        features = compute_features(clip, audio)
        mel = features["mel"]
        mels.append(mel)
        correlations.append(pitch_correlation(features["wave"], audio.hop_length,
                                              audio.sample_rate)[: len(mel)])
    if not mels:
        raise DatasetError(f"{corpus} has no clips to fit the voicing detector on")
    return fit_voicing(mels, correlations, VoicingConfig(n_mels=audio.n_mels, strength=strength))
