"""The kernel benchmark: the CPU run's JSON records, the CUDA rows' arithmetic (ceilings from
device attributes, real-time streams, latency estimates), and the CUDA measurement end to
end in numba's CUDA simulator (a child process: the simulator is chosen when numba.cuda is
first imported). Figures are not asserted: a benchmark prints them, a test checks their
form."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tts.kernels import bench
from tts.vocoder.wavenet import WaveNetConfig

REPO = Path(__file__).resolve().parents[1]
REQUIRED = {"backend", "config", "samples_per_s", "realtime_factor", "speedup_vs_torch",
            "flops_per_sample", "fraction_of_speed_of_light"}
CUDA_KEYS = REQUIRED | {"utterances", "topology", "plan", "us_per_sample", "realtime_streams",
                        "every_stream_realtime", "whole_run_samples_per_s", "distinct_classes"}
H200 = bench.GpuInfo("NVIDIA H200", (9, 0), 132, 1.98e9, 141e9)


def test_cpu_run_prints_json_records_with_the_required_keys(capsys):
    code = bench.main(["--backends", "numba", "--configs", "default", "--seconds", "0.05",
                       "--repeats", "1", "--skip-startup", "--json"])
    assert code == 0
    records = json.loads(capsys.readouterr().out)
    assert records and all(REQUIRED <= set(r) for r in records)
    one = next(r for r in records if r["utterances"] == 1)
    assert (one["backend"], one["config"], one["threads"]) == ("numba", "default", 1)
    assert one["flops_per_sample"] == bench.flops_per_sample(WaveNetConfig())
    assert one["samples_per_s"] > 0 and 0 < one["fraction_of_speed_of_light"]
    assert one["realtime_factor"] == pytest.approx(one["samples_per_s"] / 16000)
    lines = bench.cpu_table(records)
    assert lines[0].split()[:3] == ["backend", "config", "utt"] and len(lines) == len(records) + 2


def test_bad_cuda_options_end_in_a_usage_error():
    for argv in (["--cuda-chunk", "0"], ["--cuda-batches", "0"], ["--device-arrays", "cupy"]):
        with pytest.raises(SystemExit) as e:
            bench.main(argv)
        assert e.value.code == 2


def test_gpu_ceilings_come_from_sm_count_and_clock():
    # H200: 132 SMs x 128 FP32 lanes x 2 FLOPs x 1.98 GHz, and 128 bytes per SM per clock.
    assert H200.peak_flops == pytest.approx(66.9e12, rel=1e-3)
    assert H200.onchip_bandwidth == pytest.approx(132 * 128 * 1.98e9)
    a100 = bench.GpuInfo("NVIDIA A100", (8, 0), 108, 1.41e9, 80e9)
    assert a100.peak_flops == pytest.approx(19.5e12, rel=1e-2)
    assert "H200" in H200.describe() and "132 SMs at 1.98 GHz" in H200.describe()

    config = WaveNetConfig.medium()
    flops, nbytes = bench.flops_per_sample(config), 3_500_000
    light, lines = bench.cuda_speed_of_light(H200, "medium", config, flops, nbytes)
    assert light == min(H200.peak_flops / flops, H200.onchip_bandwidth / nbytes)
    assert "through 20 layers" in lines[1] and "split 11.8 us" in lines[1]


def test_cuda_record_counts_real_time_streams_and_holds_batch_one_to_its_estimate():
    # 100 utterances, calls of 3200 samples taking 0.16 s: 20,000 samples/s per utterance.
    r = bench.cuda_record("medium", 100, "fused", "fused x2, ...", [0.16] * 5, 3200,
                          flops=1_800_000, light=9e6)
    assert CUDA_KEYS <= set(r)
    assert r["stream_samples_per_s"] == pytest.approx(20000)
    assert r["samples_per_s"] == pytest.approx(2e6) and r["us_per_sample"] == pytest.approx(50)
    assert r["realtime_streams"] == pytest.approx(125) and r["every_stream_realtime"]
    assert r["fraction_of_speed_of_light"] == pytest.approx(2e6 / 9e6)
    assert r["latency_estimate_us"] is None and r["speedup_vs_torch"] is None
    # 256 utterances at 5,333 samples/s each: 85 streams' worth of audio, none in real time.
    r = bench.cuda_record("medium", 256, "fused", "fused x4", [0.6, 0.6], 3200, 1_800_000, 9e6)
    assert r["realtime_streams"] == pytest.approx(256 * 3200 / 0.6 / 16000)
    assert not r["every_stream_realtime"]
    # One utterance at 23.6 us per sample against an 11.8 us estimate: half as fast.
    r = bench.cuda_record("medium", 1, "split", "split 6+3", [2000 * 23.6e-6] * 3, 2000,
                          1_800_000, 9e6, latency_estimate_us=11.8, torch_rate=1000.0)
    assert r["us_per_sample"] == pytest.approx(23.6)
    assert r["fraction_of_latency_estimate"] == pytest.approx(0.5)
    assert r["speedup_vs_torch"] == pytest.approx(1e6 / 23.6 / 1000)
    lines = bench.cuda_table([r])
    assert "split 6+3" in lines[2] and "50%" in lines[2]


def test_calls_are_cut_so_their_conditioning_fits_the_gpu():
    medium = WaveNetConfig.medium()  # 10 KB of conditioning per sample and utterance
    per_sample = 256 * 20 * 128 * 4
    assert bench.chunk_within_memory(3200, 256, medium, 8e9) == int(4e9 // per_sample)
    assert bench.chunk_within_memory(3200, 1, medium, 8e9) == 3200
    assert bench.chunk_within_memory(3200, 256, medium, math.inf) == 3200
    assert bench.chunk_within_memory(3200, 256, medium, 0.0) == 1


def test_device_arrays_without_a_cuda_build_of_torch():
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch has CUDA here")
    assert bench.resolve_device_arrays("auto") == "numba"
    assert bench.resolve_device_arrays("numpy") == "numpy"
    with pytest.raises(ValueError, match="CUDA build of torch"):
        bench.resolve_device_arrays("torch")
    with pytest.raises(ValueError, match="device arrays"):
        bench.resolve_device_arrays("cupy")


_SIMULATOR_RUN = textwrap.dedent("""
    import json, sys
    sys.setswitchinterval(5e-5)  # the simulator's threads busy-wait: hand over the GIL sooner
    import torch
    torch.set_num_threads(1)
    from tts.kernels import bench
    from tts.kernels.cuda import CudaKernel
    from tts.vocoder.wavenet import WaveNet, WaveNetConfig

    torch.manual_seed(0)
    config = WaveNetConfig(n_layers=2, residual_channels=8, skip_channels=16,
                           output_channels=16, max_dilation=2, cond_channels=8)
    model = WaveNet(config).eval()
    gpu = bench.GpuInfo.current()
    # 32 threads per block: the simulator runs each thread as a Python thread.
    records, notes = bench.cuda_records(model, "tiny", gpu, samples=16, chunk=8, repeats=1,
                                        topologies=("fused", "split"), batches=(2,),
                                        threads=32, warmup=4)
    kernel = CudaKernel(model.export_weights(), topology="fused", threads=32)
    bench.warm_up(kernel, config, 1, "numpy", 4)
    times, distinct = bench.time_cuda(kernel, config, 1, 16, 8, 1, "numpy")
    print(json.dumps({"gpu": gpu.describe(), "records": records, "notes": notes,
                      "numpy": {"times": times, "distinct": distinct}}))
""")


def test_cuda_rows_run_end_to_end_in_the_simulator():
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed: pip install 'tts-engine[gpu]'")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _SIMULATOR_RUN], env=env, cwd=REPO, check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["gpu"].startswith("CUDA simulator") and "assumed to be an H200's" in out["gpu"]

    records = out["records"]
    # One utterance fused, then the batch of 2; the simulator cannot run the split plan.
    assert [(r["utterances"], r["topology"]) for r in records] == [(1, "fused"), (2, "fused")]
    assert any("topology split: skipped" in n and "simulator" in n for n in out["notes"])
    assert "through 2 layers" in out["notes"][1]
    for r in records:
        assert CUDA_KEYS <= set(r)
        assert (r["backend"], r["config"], r["device_arrays"], r["chunk_samples"]) == \
            ("cuda", "tiny", "numba", 8)
        assert r["plan"].startswith("fused, 32 threads")
        assert r["samples_per_s"] > 0 and r["whole_run_samples_per_s"] > 0
        assert r["samples_per_s"] == pytest.approx(r["utterances"] * r["stream_samples_per_s"])
        assert r["us_per_sample"] == pytest.approx(1e6 / r["stream_samples_per_s"])
        assert r["realtime_streams"] == pytest.approx(r["whole_run_samples_per_s"] / 16000)
        assert r["every_stream_realtime"] is False  # the simulator is no GPU
        assert 0 < r["fraction_of_speed_of_light"] < 1
        assert r["latency_estimate_us"] is None and r["fraction_of_latency_estimate"] is None
        assert 1 <= r["distinct_classes"] <= 256
    lines = bench.cuda_table(records)
    assert len(lines) == 4 and "fused, 32 threads" in lines[2]
    # Host arrays, copied to the device in every call: 2 calls of 8 samples.
    assert len(out["numpy"]["times"]) == 2 and out["numpy"]["distinct"] >= 1
