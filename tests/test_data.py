import numpy as np
import pytest
import soundfile as sf

from tts.train.data import (BucketBatchSampler, DatasetError, FeatureCache, collate_text_mel, read_metadata)
from tts.audio import AudioConfig
from tts.text.symbols import EOS_ID, PAD_ID

TEXTS = ["Hello, world.", "The quick brown fox.", "It costs $5.", "Short.", "A longer sentence, with a pause."]


def make_dataset(root, sr=22050, n=len(TEXTS)):
    (root / "wavs").mkdir(parents=True)
    lines = []
    rng = np.random.default_rng(0)
    for i in range(n):
        seconds = 0.3 + 0.1 * i
        t = np.arange(int(seconds * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(len(t))
        x = np.concatenate([np.zeros(sr // 10), x, np.zeros(sr // 10)])  # silence to trim
        sf.write(root / "wavs" / f"LJ{i:03d}.wav", x.astype(np.float32), sr)
        text = TEXTS[i % len(TEXTS)]
        lines.append(f'LJ{i:03d}|{text}|{text}')
    lines.append("LJ999|...|...")  # nothing to speak: skipped, not fatal
    sf.write(root / "wavs" / "LJ999.wav", np.zeros(4000, np.float32), sr)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_read_metadata(tmp_path):
    root = make_dataset(tmp_path / "ds")
    clips = read_metadata(root)
    assert len(clips) == len(TEXTS) + 1
    assert clips[0].id == "LJ000" and clips[0].text == "Hello, world." and clips[0].wav.is_file()
    with pytest.raises(DatasetError, match="metadata.csv"):
        read_metadata(tmp_path)


def test_feature_cache_build_and_reuse(tmp_path):
    root = make_dataset(tmp_path / "ds")
    cache = FeatureCache(root, tmp_path / "cache").build(progress=False)
    assert len(cache) == len(TEXTS)  # the unspeakable clip is skipped
    item = cache[0]
    assert item["ids"][-1] == EOS_ID
    assert item["mel"].shape[1] == 80 and 0 <= item["mel"].min() and item["mel"].max() <= 1
    assert len(item["wave"]) == len(item["mel"]) * 200  # waveform and frames align exactly
    # trimmed: ~0.3 s of tone plus 2 * 800 samples of padding, not the 0.2 s of silence
    assert len(item["wave"]) < 0.3 * 16000 + 2 * 800 + 200 + 1000
    assert cache.lengths() == [len(cache[i]["mel"]) for i in range(len(cache))]

    # Same config: reused without recomputing; a different config gets its own cache.
    stamp = (cache.dir / "LJ000.npz").stat().st_mtime_ns
    again = FeatureCache(root, tmp_path / "cache")
    assert again.built and len(again) == len(cache)
    again.build(progress=False)
    assert (cache.dir / "LJ000.npz").stat().st_mtime_ns == stamp
    other = FeatureCache(root, tmp_path / "cache", audio=AudioConfig(n_mels=40))
    assert not other.built and other.dir != cache.dir
    assert other.build(progress=False)[0]["mel"].shape[1] == 40


def test_feature_cache_parallel_build_matches(tmp_path):
    root = make_dataset(tmp_path / "ds")
    a = FeatureCache(root, tmp_path / "c1").build(progress=False)
    b = FeatureCache(root, tmp_path / "c2").build(workers=2, progress=False)
    assert a.entries == b.entries
    np.testing.assert_array_equal(a[3]["mel"], b[3]["mel"])


def test_collate_pads():
    items = [{"ids": np.array([5, 6, EOS_ID], np.int16), "mel": np.ones((5, 80), np.float32)},
             {"ids": np.array([7, EOS_ID], np.int16), "mel": np.ones((3, 80), np.float32)}]
    b = collate_text_mel(items, multiple_of=4)
    assert b["ids"].shape == (2, 3) and b["ids"][1, 2] == PAD_ID
    assert b["mel"].shape == (2, 8, 80) and b["mel"][1, 3:].abs().sum() == 0
    assert b["mel_lengths"].tolist() == [5, 3] and b["id_lengths"].tolist() == [3, 2]


def test_bucket_sampler_shards_like_one_process():
    rng = np.random.default_rng(1)
    lengths = rng.integers(10, 1000, size=203)
    one = BucketBatchSampler(lengths, 8, seed=3)
    shards = [BucketBatchSampler(lengths, 8, num_replicas=4, rank=r, seed=3) for r in range(4)]
    for epoch in (0, 1):
        for s in [one, *shards]:
            s.set_epoch(epoch)
        single = list(one)
        per_rank = [list(s) for s in shards]
        assert all(len(p) == len(single) == 26 for p in per_rank)  # ceil(203 / 8)
        for step, batch in enumerate(single):
            union = sorted(i for p in per_rank for i in p[step])
            assert union == sorted(batch)
            assert all(len(p[step]) == 2 for p in per_rank)
    # every clip is seen in an epoch
    assert set(i for b in single for i in b) == set(range(203))


def test_bucket_sampler_groups_lengths_and_is_deterministic():
    lengths = np.random.default_rng(2).integers(1, 10_000, size=512)
    s = BucketBatchSampler(lengths, 16, seed=0, bucket_batches=8)
    batches = list(s)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[np.random.default_rng(i).choice(512, 16)]) for i in range(32)])
    assert spread < random_spread / 4
    assert batches == list(BucketBatchSampler(lengths, 16, seed=0, bucket_batches=8))
    s.set_epoch(1)
    assert list(s) != batches
    epoch1 = list(s)
    s.set_epoch(1, start=5)  # resume mid-epoch
    assert list(s) == epoch1[5:]


def test_bucket_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        BucketBatchSampler([1, 2, 3], 3, num_replicas=2)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1, 2, 3], 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="empty"):
        BucketBatchSampler([], 2)
    tiny = BucketBatchSampler([5, 6, 7], 8, drop_last=False)
    assert len(list(tiny)) == 1 and len(list(tiny)[0]) == 8  # wraps to fill one batch
    assert len(BucketBatchSampler([5, 6, 7], 8, drop_last=True)) == 0
