"""The fused numba CPU kernel against the reference generator, and the backend dispatch.

Tolerances: logits within 2e-5 absolute + 2e-5 relative of the reference when both are fed
the same previous samples (the kernel sums in another order, with FMA, and uses its own
exp); sampled classes identical (a flip needs u within ~1e-6 of a cdf step).

bfloat16 weights: the same 2e-5 against the reference run with the weights rounded to
bfloat16 (the kernel computes exactly with those), and within 1e-2 of the float32
reference (each weight is off by at most 2^-9 of itself; the test models' logits, with a
standard deviation of 0.2 to 0.5, move by up to 5e-3).
"""

import dataclasses
import importlib.util
import os
import warnings

import numpy as np
import pytest
import torch

from tts import kernels
from tts.kernels import BackendUnavailableError, KernelState, available_backends, backend_status, load_backend
from tts.kernels.cpu import BLOCK, NumbaKernel, bfloat16_bits, pack_weights
from tts.kernels.reference import TorchKernel, wavenet_from_exported
from tts.vocoder.wavenet import WaveNet, WaveNetConfig
from tts.vocoder.choice import VocoderChoice


def choose_backend(backend, weights, device):
    return VocoderChoice("wavenet", backend, weights).resolve("wavenet", device.type).backend


# R not a multiple of the register block, S and A neither; a single layer with R = 7; and
# sizes that need no padding at all.
CONFIGS = {
    "R12": WaveNetConfig(n_layers=4, residual_channels=12, skip_channels=24, output_channels=20,
                         max_dilation=4, cond_channels=8),
    "R7-one-layer": WaveNetConfig(n_layers=1, residual_channels=7, skip_channels=9,
                                  output_channels=10, max_dilation=1, cond_channels=8),
    "R32": WaveNetConfig(n_layers=3, residual_channels=BLOCK, skip_channels=2 * BLOCK,
                         output_channels=BLOCK, max_dilation=2, cond_channels=8),
    # R a multiple of half a block: the gate's 2R rows fill whole blocks unpadded.
    "R48": WaveNetConfig(n_layers=2, residual_channels=48, skip_channels=40, output_channels=24,
                         max_dilation=2, cond_channels=8),
}
TINY = CONFIGS["R12"]


def make_model(config: WaveNetConfig, seed: int = 0) -> WaveNet:
    torch.manual_seed(seed)
    model = WaveNet(config).eval()
    with torch.no_grad():
        # Sharper output distributions than at initialization, so that sampling is decisive
        # and a wrong logit shows up as a wrong class.
        model.out2.weight.mul_(4.0)
    return model


def conditioning(model: WaveNet, samples: int, seed: int = 1) -> np.ndarray:
    """cond (samples, L, 2R) for a random mel."""
    frames = -(-samples // model.config.hop_length)
    g = torch.Generator().manual_seed(seed)
    mel = torch.rand(frames, model.config.n_mels, generator=g)
    return model.export_conditioning(mel)[:samples]


def uniforms(batch: int, samples: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, samples), dtype=np.float32)


def reference(model, cond, u=None, teacher=None):
    """The reference generator on numpy inputs: (classes, state, logits) as numpy/torch."""
    classes, state, logits = model.generate(
        torch.from_numpy(cond), None if u is None else torch.from_numpy(u), model.init_state(cond.shape[0]),
        teacher=None if teacher is None else torch.from_numpy(teacher), return_logits=True)
    return classes.numpy(), state, logits.numpy()


def assert_same_state(a: KernelState, b: KernelState, exact: bool = True):
    if exact:
        np.testing.assert_array_equal(a.history, b.history)
    else:
        np.testing.assert_allclose(a.history, b.history, rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(a.last_class, b.last_class)
    np.testing.assert_array_equal(a.t, b.t)


# ---- kernel vs reference ------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_teacher_forced_logits_match_reference(name):
    model = make_model(CONFIGS[name])
    T = 300  # past the receptive field, so every ring buffer wraps
    cond = conditioning(model, T)[None]  # (1, T, L, 2R)
    teacher = np.random.default_rng(3).integers(0, 256, (1, T))
    kernel = NumbaKernel(model.export_weights())
    classes, state, logits = kernel.generate(cond, None, kernel.init_state(1), teacher=teacher,
                                             return_logits=True)
    _, ref_state, ref_logits = reference(model, cond, teacher=teacher)
    assert logits.shape == ref_logits.shape == (1, T, 256)
    np.testing.assert_allclose(logits, ref_logits, rtol=2e-5, atol=2e-5)
    assert logits.std() > 0.1  # not a degenerate model
    np.testing.assert_array_equal(classes, teacher)
    assert_same_state(state, KernelState.from_torch(ref_state), exact=False)


def test_saturated_gates_and_peaked_outputs_match_reference():
    """Gate inputs far into tanh's and sigmoid's flat tails, and logits spread over ~100,
    so that exp meets its clamps."""
    model = make_model(TINY)
    with torch.no_grad():
        model.out2.weight.mul_(60.0)
    T = 200
    cond = 30.0 * np.random.default_rng(6).standard_normal((1, T, TINY.n_layers, 2 * TINY.residual_channels),
                                                           dtype=np.float32)
    teacher = np.random.default_rng(4).integers(0, 256, (1, T))
    kernel = NumbaKernel(model.export_weights())
    _, _, logits = kernel.generate(cond, None, kernel.init_state(1), teacher=teacher,
                                   return_logits=True)
    _, _, ref_logits = reference(model, cond, teacher=teacher)
    assert np.abs(cond).max() > 20 and np.ptp(ref_logits, axis=-1).min() > 80
    np.testing.assert_allclose(logits, ref_logits, rtol=2e-5, atol=2e-4)
    u = uniforms(1, T)
    classes, _ = kernel.generate(cond, u, kernel.init_state(1))
    np.testing.assert_array_equal(classes, reference(model, cond, u)[0])


def test_free_running_generation_draws_the_reference_samples():
    model = make_model(TINY)
    T = 3000
    cond = conditioning(model, T)[None]
    u = uniforms(1, T)
    kernel = NumbaKernel(model.export_weights())
    classes, state = kernel.generate(cond, u, kernel.init_state(1))
    ref_classes, ref_state, ref_logits = reference(model, cond, u)
    differ = np.flatnonzero(classes[0] != ref_classes[0])
    if differ.size:  # say where and by how little, before failing
        i = differ[0]
        cdf = torch.cumsum(torch.softmax(torch.from_numpy(ref_logits[0, i]), -1), -1).numpy()
        margin = np.abs(cdf - u[0, i]).min()
        pytest.fail(f"first divergence at step {i}: numba {classes[0, i]}, reference "
                    f"{ref_classes[0, i]}; u is {margin:.2e} from the nearest cdf step")
    assert len(np.unique(classes)) > 20  # the samples actually vary
    assert_same_state(state, KernelState.from_torch(ref_state), exact=False)


def test_sharpened_sampling_draws_the_reference_samples():
    """Per-sample sharpness (voicing-dependent sampling): the same classes as the reference
    drawing from softmax(sharpness * logits), for a batch on both thread paths, and not the
    classes of plain sampling."""
    model = make_model(TINY)
    T = 2000
    cond = np.stack([conditioning(model, T, seed=s) for s in (1, 5)])
    u = uniforms(2, T)
    sharpness = np.random.default_rng(7).uniform(1.0, 3.0, (2, T)).astype(np.float32)
    ref = [model.generate(torch.from_numpy(cond), torch.from_numpy(u), model.init_state(2),
                          sharpness=s)[0].numpy() for s in (torch.from_numpy(sharpness), None)]
    for parallel in (False, True):
        kernel = NumbaKernel(model.export_weights(), parallel=parallel)
        classes, _ = kernel.generate(cond, u, kernel.init_state(2), sharpness=sharpness)
        np.testing.assert_array_equal(classes, ref[0])
    assert (ref[0] != ref[1]).mean() > 0.1
    # Sharper sampling concentrates on fewer classes.
    assert np.std(ref[0].astype(float) - 128) < np.std(ref[1].astype(float) - 128) or \
        len(np.unique(ref[0])) < len(np.unique(ref[1]))
    torch_kernel = TorchKernel(model.export_weights())
    classes, _ = torch_kernel.generate(cond, u, torch_kernel.init_state(2), sharpness=sharpness)
    np.testing.assert_array_equal(classes, ref[0])


def test_torch_backend_wraps_the_reference_generator():
    model = make_model(TINY)
    weights = model.export_weights()
    rebuilt = wavenet_from_exported(weights)
    for name, array in rebuilt.export_weights().items():
        np.testing.assert_array_equal(array, weights[name], err_msg=name)
    T = 50
    cond, u = conditioning(model, T)[None], uniforms(1, T)
    for kernel in (TorchKernel(weights), TorchKernel.from_model(model)):
        classes, state = kernel.generate(cond, u, kernel.init_state(1))
        ref_classes, ref_state, _ = reference(model, cond, u)
        np.testing.assert_array_equal(classes, ref_classes)
        assert classes.dtype == np.int32
        assert_same_state(state, KernelState.from_torch(ref_state))


def test_torch_backend_rejects_dilations_the_model_cannot_build():
    weights = make_model(TINY).export_weights()
    weights["dilations"] = np.array([1, 4, 2, 1], np.int32)
    with pytest.raises(ValueError, match="dilations"):
        wavenet_from_exported(weights)


# ---- chunks, batches, state ------------------------------------------------------------


def test_chunked_generation_equals_one_shot():
    model = make_model(TINY)
    T = 700
    cond, u = conditioning(model, T)[None], uniforms(1, T)
    kernel = NumbaKernel(model.export_weights())
    whole, whole_state = kernel.generate(cond, u, kernel.init_state(1))
    state, pieces = kernel.init_state(1), []
    for a, b in ((0, 1), (1, 2), (2, 203), (203, 203), (203, 700)):  # odd sizes, an empty one
        classes, state = kernel.generate(cond[:, a:b], u[:, a:b], state)
        pieces.append(classes)
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    assert_same_state(state, whole_state)
    assert state.t[0] == T


def test_parallel_batch_equals_one_utterance_at_a_time():
    model = make_model(TINY)
    T, B = 400, 3
    cond = np.stack([conditioning(model, T, seed=10 + b) for b in range(B)])  # (B, T, L, 2R)
    u = uniforms(B, T, seed=5)
    kernel = NumbaKernel(model.export_weights(), parallel=True)
    # Utterances at different steps: utterance 1 is 37 samples further on.
    start = kernel.init_state(B)
    _, ahead = kernel.generate(cond[1:2, :37], u[1:2, :37], kernel.init_state(1))
    start.history[1], start.last_class[1], start.t[1] = ahead.history[0], ahead.last_class[0], ahead.t[0]
    before = start.copy()
    classes, state = kernel.generate(cond, u, start)
    assert_same_state(start, before)  # the input state is not modified
    for b in range(B):
        one = KernelState(start.history[b:b + 1], start.last_class[b:b + 1], start.t[b:b + 1])
        alone, alone_state = kernel.generate(cond[b:b + 1], u[b:b + 1], one)
        np.testing.assert_array_equal(classes[b], alone[0])
        assert_same_state(KernelState(state.history[b:b + 1], state.last_class[b:b + 1],
                                      state.t[b:b + 1]), alone_state)
    np.testing.assert_array_equal(state.t, [T, T + 37, T])
    assert torch.get_num_threads() == 1  # the batch left torch's thread count alone (conftest sets 1)
    serial, serial_state = NumbaKernel(model.export_weights(), parallel=False).generate(cond, u, start)
    np.testing.assert_array_equal(serial, classes)
    assert_same_state(serial_state, state)


def test_state_round_trips_through_the_reference_state():
    model = make_model(TINY)
    T = 120
    cond, u = conditioning(model, T)[None], uniforms(1, T)
    kernel = NumbaKernel(model.export_weights())
    # First half on the reference, second half on the kernel, from the converted state.
    ref_classes, ref_state, _ = reference(model, cond[:, :60], u[:, :60])
    classes, state = kernel.generate(cond[:, 60:], u[:, 60:], KernelState.from_torch(ref_state))
    whole, _, _ = reference(model, cond, u)
    np.testing.assert_array_equal(np.concatenate([ref_classes, classes], axis=1), whole)


# ---- bfloat16 weights ------------------------------------------------------------------------


def bfloat16_rounded(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The exported weights with every matrix rounded to bfloat16 and back to float32."""
    return {name: (bfloat16_bits(a).astype(np.uint32) << 16).view(np.float32) if name.endswith("_w") else a
            for name, a in weights.items()}


def test_bfloat16_packing_rounds_to_nearest_even():
    one = 0x3F80  # 1.0; a bfloat16 keeps 7 fraction bits, so its step at 1 is 2^-7
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, 1 + 2**-8 - 2**-20,
                       -(1 + 3 * 2**-8), 3.4e38, 1e-40, 0.0], np.float32)
    expected = [one, one,  # a tie rounds to the even neighbour: down to 1.0 ...
                one + 2,  # ... and up from the odd 1 + 2^-7 to 1 + 2^-6
                one + 1, one,  # above and below a tie: nearest
                0x8000 | (one + 2), 0x7F80,  # the sign carried; past the largest bfloat16: inf
                0x0001, 0x0000]  # a subnormal keeps its top bits
    np.testing.assert_array_equal(bfloat16_bits(values), expected)
    assert bfloat16_bits(np.array([np.nan], np.float32))[0] & 0x7FFF > 0x7F80  # NaN, not inf
    random = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    np.testing.assert_array_equal(bfloat16_bits(random),
                                  torch.from_numpy(random).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))


@pytest.mark.parametrize("name", CONFIGS)
def test_bf16_teacher_forced_logits_match_reference(name):
    model = make_model(CONFIGS[name])
    weights = model.export_weights()
    T = 300
    cond = conditioning(model, T)[None]
    teacher = np.random.default_rng(3).integers(0, 256, (1, T))
    kernel = NumbaKernel(weights, weight_format="bf16")
    classes, state, logits = kernel.generate(cond, None, kernel.init_state(1), teacher=teacher,
                                             return_logits=True)
    np.testing.assert_array_equal(classes, teacher)
    rounded = wavenet_from_exported(bfloat16_rounded(weights))
    _, rounded_state, rounded_logits = reference(rounded, cond, teacher=teacher)
    np.testing.assert_allclose(logits, rounded_logits, rtol=2e-5, atol=2e-5)
    assert_same_state(state, KernelState.from_torch(rounded_state), exact=False)
    _, _, ref_logits = reference(model, cond, teacher=teacher)
    error = np.abs(logits - ref_logits).max()
    assert 0 < error < 1e-2, error  # bfloat16 weights do change the logits, a little
    assert ref_logits.std() > 0.1


def test_bf16_packed_stream_is_half_the_float32_one():
    weights = make_model(TINY).export_weights()
    fp32, bf16 = pack_weights(weights), pack_weights(weights, "bf16")
    assert bf16.stream.dtype == np.uint32 and bf16.stream.ctypes.data % 64 == 0
    assert bf16.stream.nbytes * 2 == fp32.stream.nbytes and bf16.stream.shape[1] == BLOCK
    # Word [p, j]: row 2p's weight j in the low half, row 2p + 1's in the high half.
    bits = bfloat16_bits(fp32.stream)
    np.testing.assert_array_equal(bf16.stream & 0xFFFF, bits[0::2])
    np.testing.assert_array_equal(bf16.stream >> 16, bits[1::2])
    np.testing.assert_array_equal(bf16.embedding, fp32.embedding)  # biases stay float32
    with pytest.raises(ValueError, match="unknown weight format 'fp16'; choose from fp32, bf16"):
        NumbaKernel(weights, weight_format="fp16")


def test_bf16_chunked_generation_equals_one_shot():
    model = make_model(TINY)
    T = 500
    cond, u = conditioning(model, T)[None], uniforms(1, T)
    kernel = NumbaKernel(model.export_weights(), weight_format="bf16")
    whole, whole_state = kernel.generate(cond, u, kernel.init_state(1))
    state, pieces = kernel.init_state(1), []
    for a, b in ((0, 1), (1, 150), (150, 150), (150, 500)):
        classes, state = kernel.generate(cond[:, a:b], u[:, a:b], state)
        pieces.append(classes)
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    assert_same_state(state, whole_state)
    # Free-running, the bf16 kernel draws the reference's samples for the rounded weights.
    ref_classes, _, _ = reference(wavenet_from_exported(bfloat16_rounded(model.export_weights())), cond, u)
    np.testing.assert_array_equal(whole, ref_classes)


def test_bf16_parallel_batch_equals_serial():
    model = make_model(TINY)
    T, B = 300, 3
    cond = np.stack([conditioning(model, T, seed=10 + b) for b in range(B)])  # (B, T, L, 2R)
    u = uniforms(B, T, seed=5)
    weights = model.export_weights()
    parallel = NumbaKernel(weights, parallel=True, weight_format="bf16")
    serial = NumbaKernel(weights, parallel=False, weight_format="bf16")
    classes, state = parallel.generate(cond, u, parallel.init_state(B))
    serial_classes, serial_state = serial.generate(cond, u, serial.init_state(B))
    np.testing.assert_array_equal(classes, serial_classes)
    assert_same_state(state, serial_state)
    for b in range(B):
        alone, _ = serial.generate(cond[b:b + 1], u[b:b + 1], serial.init_state(1))
        np.testing.assert_array_equal(classes[b], alone[0])


# ---- errors a caller can make --------------------------------------------------------------


def test_generate_rejects_bad_inputs_with_clear_messages():
    model = make_model(TINY)
    kernel = NumbaKernel(model.export_weights())
    cond, u, state = conditioning(model, 10)[None], uniforms(1, 10), kernel.init_state(1)
    with pytest.raises(ValueError, match=r"cond has shape .* expected \(B, T, L, 2R\)"):
        kernel.generate(cond[:, :, :2], u, state)
    with pytest.raises(ValueError, match="cond has dtype float64"):
        kernel.generate(cond.astype(np.float64), u, state)
    with pytest.raises(ValueError, match="uniforms have shape"):
        kernel.generate(cond, u[:, :5], state)
    with pytest.raises(ValueError, match="exactly one of uniforms"):
        kernel.generate(cond, u, state, teacher=np.zeros((1, 10), np.int64))
    with pytest.raises(ValueError, match="teacher classes"):
        kernel.generate(cond, None, state, teacher=np.full((1, 10), 256))
    with pytest.raises(ValueError, match="state.history has shape"):
        kernel.generate(cond, u, kernel.init_state(2))
    with pytest.raises(ValueError, match="batch_size"):
        kernel.init_state(0)
    with pytest.raises(ValueError, match="sharpness has shape"):
        kernel.generate(cond, u, state, sharpness=np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="sharpness must be finite and > 0"):
        kernel.generate(cond, u, state, sharpness=np.zeros((1, 10), np.float32))
    with pytest.raises(ValueError, match="sharpness applies to sampling"):
        kernel.generate(cond, None, state, teacher=np.zeros((1, 10), np.int64),
                        sharpness=np.ones((1, 10), np.float32))


def test_pack_weights_names_the_bad_tensor():
    weights = make_model(TINY).export_weights()
    weights["res_b"] = weights["res_b"][:, :-1].copy()
    with pytest.raises(ValueError, match="res_b has shape"):
        pack_weights(weights)
    weights = make_model(TINY).export_weights()
    del weights["out2_w"]
    with pytest.raises(ValueError, match="lack out2_w"):
        NumbaKernel(weights)


def test_packed_weights_are_aligned_and_padded():
    packed = pack_weights(make_model(TINY).export_weights())
    assert packed.stream.ctypes.data % 64 == 0
    assert packed.stream.shape[1] == BLOCK and packed.stream.flags.c_contiguous
    assert packed.res_b.shape[1] % BLOCK == 0 and packed.skip_b.shape[0] % BLOCK == 0


def test_the_stream_pads_residual_inputs_to_half_a_block_only():
    """R = 48 streams 48 residual inputs a layer, not 64: the weights a sample reads grow
    with R, not with R rounded up to a block."""
    config = CONFIGS["R48"]
    packed = pack_weights(make_model(config).export_weights())
    L, H, Rp, Sp, Ap = config.n_layers, 48, 64, 64, 32
    assert packed.dilated_b.shape == (L, 2 * H) and packed.res_b.shape == (L, Rp)
    assert packed.stream.size == L * (4 * H * H + Rp * H) + Sp * L * H + Ap * Sp + 256 * Ap


# ---- dispatch --------------------------------------------------------------------------


def test_dispatch_lists_and_loads_the_cpu_backends():
    assert kernels.BACKENDS == ("torch", "numba", "cuda")
    usable = available_backends()
    assert usable[:2] == ["torch", "numba"]
    model = make_model(TINY)
    assert isinstance(load_backend("numba", model), NumbaKernel)
    assert isinstance(load_backend("numba", model.export_weights()), NumbaKernel)
    assert load_backend("torch", model).model is model
    assert isinstance(load_backend("torch", model.export_weights()), TorchKernel)
    assert choose_backend("auto", "fp32", torch.device("cpu")) == "numba"
    assert choose_backend("auto", "bf16", torch.device("cuda")) == "numba"
    if not backend_status("cuda")[0]:  # a named kernel that cannot run here is refused when resolved
        with pytest.raises(BackendUnavailableError, match="^cuda backend unavailable: "):
            choose_backend("cuda", "fp32", torch.device("cpu"))


def test_dispatch_errors_are_clear():
    model = make_model(TINY)
    with pytest.raises(ValueError, match="unknown vocoder backend 'tpu'"):
        load_backend("tpu", model)
    with pytest.raises(ValueError, match="unknown vocoder backend"):
        backend_status("tpu")
    if backend_status("cuda")[0]:
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(BackendUnavailableError, match="^cuda backend unavailable: "):
        load_backend("cuda", model)


def test_auto_falls_back_to_torch_with_a_warning_without_numba(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_numba(name, *args, **kwargs):
        return None if name in ("numba", "tts.kernels.cuda") else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_numba)
    model = make_model(TINY)
    assert backend_status("numba") == (False, "numba is not installed")
    with pytest.raises(BackendUnavailableError, match="^numba backend unavailable: numba is not installed$"):
        load_backend("numba", model)
    with pytest.warns(RuntimeWarning, match="torch reference"):
        assert choose_backend("auto", "fp32", torch.device("cpu")) == "torch"


def test_auto_does_not_warn_when_a_fast_backend_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_backend("auto", "fp32", torch.device("cpu")) == "numba"


def test_compiled_code_is_cached_in_the_user_cache_folder_not_the_package(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    script = ("import numpy as np\n"
              "from tts.vocoder.lpc import lpc_synthesis, lpc_from_mel\n"
              "mel = np.random.default_rng(0).random((3, 80)).astype(np.float32)\n"
              "lpc_synthesis(np.zeros(600, np.float32), lpc_from_mel(mel, 16), 200)\n")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    from tts import __version__

    cached = list((tmp_path / "tts-engine" / __version__ / "numba").rglob("*.nbi"))
    assert cached and any("lpc" in p.name for p in cached), cached


# ---- the first sample ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_every_kernel_starts_from_silence_mu_law_class_128(backend):
    """Before the first sample the network sees mu-law's zero, class 128, not class 0 (the
    start-state bug LPCNet once had): the kernel's first logits are the network's with input
    128, and differ from those with input 0."""
    from tts.audio import mu_law_encode
    from tts.vocoder.wavenet import START_CLASS

    assert START_CLASS == 128 == int(mu_law_encode(np.zeros(1))[0])
    model = make_model(TINY)
    kernel = load_backend(backend, model)
    state = kernel.init_state(2)
    assert state.last_class.tolist() == [128, 128]
    mel = torch.randn(1, 1, TINY.n_mels)
    with torch.no_grad():
        cond = model.conditioning(mel).numpy()  # (1, T, L, 2R)
    teacher = np.zeros((1, cond.shape[1]), np.int32)
    _, _, logits = kernel.generate(cond, None, kernel.init_state(1), teacher=teacher, return_logits=True)
    with torch.no_grad():
        silence = model(torch.full((1, cond.shape[1]), START_CLASS), mel)[0, 0].numpy()
        zero = model(torch.zeros(1, cond.shape[1], dtype=torch.long), mel)[0, 0].numpy()
    np.testing.assert_allclose(logits[0, 0], silence, atol=1e-4)
    assert np.abs(logits[0, 0] - zero).max() > 1e-3


# ---- LPCNet's inputs: the predictor in the loop ----------------------------------------


def lpc_model(seed: int = 0, order: int = 4) -> WaveNet:
    """A tiny network with LPCNet's inputs, their embeddings random (not the zeros training
    starts from), so that a wrong signal or prediction class shows in the logits."""
    model = make_model(dataclasses.replace(TINY, lpc_order=order, lpc_inputs=True), seed)
    with torch.no_grad():
        model.embedding_signal.weight.normal_(0.0, 1.0)
        model.embedding_prediction.weight.normal_(0.0, 1.0)
    return model


def lpc_inputs(batch: int, samples: int, order: int = 4, seed: int = 3) -> np.ndarray:
    """Per-sample prediction coefficients (B, T, order) of a stable, resonant predictor."""
    rng = np.random.default_rng(seed)
    frames = -(-samples // TINY.hop_length)
    a = rng.uniform(-0.3, 0.3, (batch, frames, order)).astype(np.float32)
    a[..., 0] += 0.6  # a strong first tap: the signal carries over from sample to sample
    return np.ascontiguousarray(np.repeat(a, TINY.hop_length, axis=1)[:, :samples])


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_lpc_inputs_kernels_draw_the_reference_samples_chunk_by_chunk(backend):
    model = lpc_model()
    T = 300
    cond = np.stack([conditioning(model, T, seed=1), conditioning(model, T, seed=5)])  # (2, T, L, 2R)
    u, lpc = uniforms(2, T), lpc_inputs(2, T)
    expected, state, _ = model.generate(torch.from_numpy(cond), torch.from_numpy(u), model.init_state(2),
                                        lpc=torch.from_numpy(lpc), return_logits=True)
    expected = expected.numpy()
    kernel = load_backend(backend, model.export_weights())
    assert kernel.init_state(2).signal.shape == (2, 4)
    got, s, start = [], kernel.init_state(2), 0
    for n in (1, 7, 92, 200):  # chunks at any sample, not only frame edges
        classes, s = kernel.generate(cond[:, start:start + n], u[:, start:start + n], s, lpc=lpc[:, start:start + n])
        got.append(classes)
        start += n
    np.testing.assert_array_equal(np.concatenate(got, axis=1), expected)
    np.testing.assert_allclose(s.signal, state.signal.numpy(), rtol=0, atol=1e-12)
    assert len(np.unique(expected)) > 10 and np.abs(s.signal).max() > 0  # the signal really moved


def test_lpc_inputs_change_what_the_kernel_draws_and_teacher_forced_logits_match():
    model = lpc_model(seed=1)
    T = 250
    cond, u, lpc = conditioning(model, T)[None], uniforms(1, T), lpc_inputs(1, T)
    kernel = load_backend("numba", model)
    sampled, _ = kernel.generate(cond, u, kernel.init_state(1), lpc=lpc)
    _, _, logits = kernel.generate(cond, None, kernel.init_state(1), teacher=sampled, lpc=lpc, return_logits=True)
    reference = model.generate(torch.from_numpy(cond), None, teacher=torch.from_numpy(sampled).long(),
                               lpc=torch.from_numpy(lpc), return_logits=True)[2].numpy()
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    # Other coefficients, other predictions: other samples (the inputs are used).
    other, _ = kernel.generate(cond, u, kernel.init_state(1), lpc=np.ascontiguousarray(-lpc))
    assert not np.array_equal(other, sampled)
    with pytest.raises(ValueError, match="pass lpc"):
        kernel.generate(cond, u, kernel.init_state(1))
    with pytest.raises(ValueError, match="lpc has shape"):
        kernel.generate(cond, u, kernel.init_state(1), lpc=lpc[:, :, :3])


def test_lpc_inputs_teacher_forced_forward_equals_generation():
    """Training's parallel forward, fed the classes of the signal and the prediction the loop
    computes (`noisy_excitation` with no noise), gives the generator's logits."""
    from tts.vocoder.lpc import noisy_excitation

    model = lpc_model(seed=2)
    frames, hop = 2, TINY.hop_length
    mel = torch.rand(1, frames, TINY.n_mels)
    audio = (0.3 * np.sin(np.arange(frames * hop) * 0.07)).astype(np.float32)
    a = lpc_inputs(1, frames * hop)[0, ::hop]  # (frames, order)
    targets, inputs, signal_in, prediction_in = noisy_excitation(audio, a, hop, np.zeros(4, np.float32),
                                                                 np.zeros(len(audio), np.int64), 128)
    as_t = lambda x: torch.from_numpy(x)[None]  # noqa: E731
    with torch.no_grad():
        logits = model(as_t(inputs), mel, as_t(signal_in), as_t(prediction_in))
        reference = model.forward_reference(as_t(inputs), mel, as_t(signal_in), as_t(prediction_in))
    cond = model.conditioning(mel).detach()
    generated = model.generate(cond, None, teacher=as_t(targets), lpc=torch.from_numpy(np.repeat(a, hop, 0))[None],
                               return_logits=True)[2]
    torch.testing.assert_close(logits, generated, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reference, logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="both or neither"):
        model(as_t(inputs), mel)
