import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tts.train.data import (BucketBatchSampler, DatasetError, EpochBatches, EpochItems, FeatureCache, collate_text_mel,
                            read_metadata)
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


# --- feature workers ------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
# Not in CMUdict: only the neural G2P pronounces them, so each worker loads it.
MADE_UP = ["Zorblaxing quindrofel.", "Snarvexity plimbotrue.", "Gruntleford vexamorphic.", "Quindrofel zorblax."]


def make_made_up_dataset(root, n=8):
    (root / "wavs").mkdir(parents=True)
    t = np.arange(int(0.3 * 16000)) / 16000
    for i in range(n):
        sf.write(root / "wavs" / f"c{i}.wav", (0.5 * np.sin(2 * np.pi * (150 + 20 * i) * t)).astype(np.float32), 16000)
    text = "".join(f"c{i}|{MADE_UP[i % len(MADE_UP)]}|{MADE_UP[i % len(MADE_UP)]}\n" for i in range(n))
    (root / "metadata.csv").write_text(text, encoding="utf-8")
    return root


def start_python(args, **env) -> subprocess.Popen:
    """A Python of its own, in a session of its own so that whatever it leaves can be ended,
    with torch's threads as the machine gives them (no OMP_NUM_THREADS)."""
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, **env,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def end_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


FEATURES_AFTER_A_VOICE = """
import sys, torch
from voices import make_tiny_voice
from tts.voice import load_voice
from tts.train.data import FeatureCache

torch.set_num_threads(2)
voice = load_voice(make_tiny_voice(sys.argv[3]))
with torch.no_grad():  # the parent's thread pools run, as a trainer's or a synthesizer's do
    voice.acoustic.generate(torch.tensor([[5, 6, 7, 2]]))
    torch.randn(1 << 20).exp().sum()
FeatureCache(sys.argv[1], sys.argv[2] + "/pool", trim_db=None).build(workers=2, progress=False)
FeatureCache(sys.argv[1], sys.argv[2] + "/here", trim_db=None).build(workers=1, progress=False)
print("built")
"""


def test_workers_build_features_after_the_parent_used_torch(tmp_path):
    """Workers forked from a process whose torch thread pools had run hung in the neural G2P;
    the pool's workers start clean, and compute what the parent computes."""
    root = make_made_up_dataset(tmp_path / "ds")
    proc = start_python(["-c", FEATURES_AFTER_A_VOICE, str(root), str(tmp_path / "cache"), str(tmp_path / "voice")])
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the feature build hung")
    finally:
        end_session(proc)
    assert proc.returncode == 0 and out.strip() == "built", err
    # Against the same process's own computation: numpy's BLAS threads, which the workers
    # take from its environment, decide the mel's last bits.
    pool, here = (FeatureCache(root, tmp_path / "cache" / where, trim_db=None) for where in ("pool", "here"))
    assert pool.built and pool.entries == here.entries and len(pool) == 8
    for i in range(len(pool)):
        for key in ("ids", "mel", "wave"):
            np.testing.assert_array_equal(pool[i][key], here[i][key])


STUCK_WORKERS = """
import os, sys, time
from pathlib import Path
import tts.train.data

def stuck(*args, **kwargs):  # every worker hangs in its first clip
    Path(os.environ["STUCK_DIR"], str(os.getpid())).touch()
    time.sleep(3600)

tts.train.data.load_audio = stuck

if __name__ == "__main__":
    from tts.command import run_command
    from tts.train.data import FeatureCache

    def body():
        FeatureCache(sys.argv[1], sys.argv[2], trim_db=None).build(workers=2, progress=False)
        return 0

    sys.exit(run_command("train", body))
"""


def test_sigterm_ends_a_feature_build_and_its_workers(tmp_path):
    root = make_made_up_dataset(tmp_path / "ds", n=16)  # two chunks of 8 jobs: one for each worker
    script = tmp_path / "stuck.py"  # a file, so that the workers run its patch too
    script.write_text(STUCK_WORKERS)
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    proc = start_python([str(script), str(root), str(tmp_path / "cache")], STUCK_DIR=str(stuck))
    try:
        deadline = time.monotonic() + 120
        while len(list(stuck.iterdir())) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name) for p in stuck.iterdir()]
        assert len(workers) == 2, proc.communicate(timeout=5)
        os.kill(proc.pid, signal.SIGTERM)  # the parent alone, as a scheduler stops a job
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGTERM left the feature build running")
    finally:
        end_session(proc)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.count("\n") == 1 and err.startswith("train: ") and "Traceback" not in err, err
    assert not any(alive(pid) for pid in workers)
    assert not list((tmp_path / "cache").rglob("*.part")) and not list((tmp_path / "cache").rglob("manifest.json"))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


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


def test_epoch_batches_run_epoch_after_epoch_from_a_saved_position():
    lengths = np.random.default_rng(3).integers(1, 1000, size=40)
    s = BucketBatchSampler(lengths, 8, seed=1)
    epochs = []
    for epoch in (2, 3, 4):
        s.set_epoch(epoch)
        epochs += [[(epoch, i) for i in batch] for batch in s]
    run = EpochBatches(BucketBatchSampler(lengths, 8, seed=1), epoch=2)
    assert list(itertools.islice(run, 15)) == epochs
    resumed = EpochBatches(BucketBatchSampler(lengths, 8, seed=1), epoch=2, start=3)
    assert list(itertools.islice(resumed, 12)) == epochs[3:]
    with pytest.raises(ValueError, match="no batch"):
        EpochBatches(BucketBatchSampler([5, 6, 7], 8, drop_last=True))


class _Drawn(torch.utils.data.Dataset):
    """Items drawn from (seed, epoch, index), and the process that made them."""

    def __init__(self):
        self.seed = self.epoch = 0

    def set_epoch(self, epoch, seed):
        self.epoch, self.seed = epoch, seed

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return {"draw": float(np.random.default_rng([self.seed, self.epoch, i]).random()), "pid": os.getpid()}


def test_one_loader_reads_every_epoch_with_the_same_worker_and_each_items_epoch():
    """A three-clip corpus is one batch an epoch: its worker lives on across epochs, and every
    item is drawn from its own epoch, as the dataset gives it with set_epoch."""
    batches = EpochBatches(BucketBatchSampler([1, 2, 3], 4, seed=0))
    loader = torch.utils.data.DataLoader(EpochItems(_Drawn(), seed=7), batch_sampler=batches, num_workers=1,
                                         collate_fn=list)
    got = list(itertools.islice(loader, 4))
    assert len({item["pid"] for batch in got for item in batch}) == 1 != os.getpid()
    reference = _Drawn()
    for epoch, batch in enumerate(got):
        reference.set_epoch(epoch, 7)
        keys = [i for _, i in next(iter(EpochBatches(BucketBatchSampler([1, 2, 3], 4, seed=0), epoch)))]
        assert [item["draw"] for item in batch] == [reference[i]["draw"] for i in keys]
    assert got[0] != got[1]


def eta_seconds(text: str) -> float:
    return sum(int(part) * 60**i for i, part in enumerate(reversed(text.split(":"))))


def test_the_feature_bar_times_from_the_first_clip_on(tmp_path, monkeypatch, capsys):
    """The first clip carries the workers' warm-up (imports, the G2P loading): an ETA measured
    over it promised minutes for a build that then ended at once."""
    import tqdm.std

    import tts.train.data as data

    clock = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    compute = data.compute_features

    def timed(clip, *args):
        clock[0] += 600.0 if clip.id == "LJ000" else 1.0  # the warm-up, then a second a clip
        return compute(clip, *args)

    monkeypatch.setattr(data, "compute_features", timed)
    root = make_dataset(tmp_path / "ds", n=10)  # and LJ999, with nothing to speak
    capsys.readouterr()
    FeatureCache(root, tmp_path / "cache", trim_db=None).build(progress=True)
    shown = re.findall(r"features:.*?(\d+)/11 \[[\d:]+<([\d:]+)", capsys.readouterr().err)
    assert shown and all(int(n) > 1 for n, _ in shown)  # no ETA from the first clip alone
    for n, eta in shown:
        assert eta_seconds(eta) <= 11 - int(n) + 1, (n, eta)
