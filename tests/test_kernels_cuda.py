"""The persistent CUDA kernel: thread layout and plans on the host, PTX for sm_90 without a
GPU, samples and logits against the torch reference in numba's CUDA simulator, and on a real
GPU where there is one.

The simulator is chosen when numba.cuda is first imported (NUMBA_ENABLE_CUDASIM=1), so the
simulator tests run in a child pytest process started by `test_simulator_suite`; run
directly with the variable set, this file runs only them."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed: pip install 'tts-engine[gpu]'")

from tts.audio import mu_law_decode  # noqa: E402
from tts.kernels import cuda as kc  # noqa: E402
from tts.kernels import cuda_checks as checks  # noqa: E402
from tts.kernels.state import KernelState  # noqa: E402
from tts.vocoder.lpc import lpc_synthesis  # noqa: E402
from tts.vocoder.wavenet import WaveNetConfig, validate_exported  # noqa: E402

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
on_host = pytest.mark.skipif(SIMULATOR, reason="runs in the host process, not the simulator")
in_simulator = pytest.mark.skipif(not SIMULATOR, reason="runs inside test_simulator_suite")

TINY = checks._tiny_config()  # L=3, R=8, S=16, A=16, dilations 1, 2, 1
TINY_LPC = checks._tiny_config(lpc_order=16)  # the same with LPCNet's inputs, 16 taps


def _dims(config):
    return validate_exported(checks._random_weights(config))


def _inputs(model, batch, steps, seed=1):
    """cond (B, T, L, 2R), reference classes and margin uniforms (B, T), as torch tensors."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, 1, model.config.n_mels, generator=g)
    cond = model.conditioning(mel).detach()[:, :steps].contiguous()
    classes, uniforms = checks.margin_uniforms(model, cond, torch.rand(batch, steps, generator=g))
    return cond, classes, uniforms


# ---- host: layouts, plans, input checks ------------------------------------------------------


@on_host
@pytest.mark.parametrize("rows, inputs, threads, max_lanes", [
    (8, 8, 32, 32), (64, 64, 256, 32), (256, 86, 256, 32), (86, 256, 256, 32),
    (768, 32, 256, 32), (16, 24, 32, 1), (5, 3, 64, 32),
])
def test_packed_products_compute_w_times_v(rows, inputs, threads, max_lanes):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, inputs)).astype(np.float32)
    v = rng.standard_normal(inputs).astype(np.float32)
    phase = kc._Phase(rows, inputs, threads, max_lanes)
    assert phase.lanes <= max_lanes and phase.lanes * phase.per_pass == threads
    np.testing.assert_allclose(phase.emulate(phase.pack(w), v), w @ v, rtol=1e-5, atol=1e-5)


@on_host
def test_plans_for_the_named_voices_fit_an_h200():
    limit = kc.H200["smem_per_block"]
    default, medium = WaveNetConfig(), WaveNetConfig.medium()
    plan = kc.KernelPlan.choose(_dims(default), default.dilations, 1)
    assert plan.fused and plan.stage_chain and plan.smem_bytes <= limit
    plan = kc.KernelPlan.choose(_dims(medium), medium.dilations, 1)
    assert not plan.fused and (plan.groups, plan.parts) == (6, 3) and plan.smem_bytes <= limit
    assert plan.tail and plan.group_layers[-2:] == ((16, 19), (19, 20))
    assert plan.stage_chain and plan.stage_output and plan.blocks_per_pipeline == 9
    # Too many utterances for 8 co-resident blocks each: one fused block per utterance, then
    # several utterances per block once the blocks would stream too much from L2.
    assert kc.KernelPlan.choose(_dims(medium), medium.dilations, 17).fused
    assert kc.KernelPlan.choose(_dims(medium), medium.dilations, 100).utterances_per_block == 2
    assert kc.KernelPlan.choose(_dims(default), default.dilations, 600).utterances_per_block == 4
    wide = WaveNetConfig(residual_channels=48, lpc_order=16)  # 1.5x the default voice's width
    assert kc.KernelPlan.choose(_dims(wide), wide.dilations, 1).smem_bytes <= limit


@on_host
def test_packed_weights_place_biases_and_embedding():
    model = checks._sharp_model(TINY)
    w = model.export_weights()
    plan = kc.KernelPlan.choose(validate_exported(w), TINY.dilations, 1, topology="split")
    buf = kc.pack_weights(plan, w)
    lay = plan.weight_layout
    assert buf.shape == (lay["total"],) and buf.dtype == np.float32
    np.testing.assert_array_equal(buf[lay["embedding"]:lay["embedding"] + w["embedding"].size],
                                  w["embedding"].ravel())
    np.testing.assert_array_equal(buf[lay["out2_b"]:lay["out2_b"] + 256], w["out2_b"])
    S = TINY.skip_channels
    skip_b = buf[lay["skip_b"]:lay["skip_b"] + plan.groups * S].reshape(plan.groups, S)
    assert plan.group_layers == ((0, 2), (2, 3))  # a tail group of the last layer
    for g, (first, end) in enumerate(plan.group_layers):
        np.testing.assert_allclose(skip_b[g], w["skip_b"][first:end].sum(axis=0), rtol=1e-6)
    # Every weight of every matrix lands somewhere (the packing only adds zeros).
    matrices = ("dilated_w", "res_w", "skip_w", "out1_w", "out2_w")
    assert np.count_nonzero(buf) >= sum(np.count_nonzero(w[n]) for n in matrices)


def _unpack(phase, packed: np.ndarray) -> np.ndarray:
    """Inverse of the documented thread layout of `_Phase.pack`: element [p, q, tid, i] is the
    weight of row p * per_pass + tid // lanes and input tid % lanes + (VECTOR * q + i) * lanes.
    Returns the whole padded matrix (passes * per_pass, steps * lanes)."""
    assert packed.shape == (phase.passes, phase.steps // kc.VECTOR, phase.threads, kc.VECTOR)
    p, q, tid, i = np.indices(packed.shape)
    rows = p * phase.per_pass + tid // phase.lanes
    cols = tid % phase.lanes + (kc.VECTOR * q + i) * phase.lanes
    out = np.full((phase.passes * phase.per_pass, phase.steps * phase.lanes), np.nan, np.float32)
    out[rows, cols] = packed
    assert not np.isnan(out).any()  # every element has exactly one place
    return out


def _assert_holds(phase, packed, matrix, what):
    """The packed matrix is `matrix` element by element, and zero wherever it is padding."""
    full = _unpack(phase, packed)
    rows, cols = matrix.shape
    assert (rows, cols) == (phase.rows, phase.inputs), what
    np.testing.assert_array_equal(full[:rows, :cols], matrix, err_msg=what)
    assert not full[rows:].any() and not full[:, cols:].any(), f"{what}: non-zero padding"


def _plans():
    yield "split with a tail group", kc.KernelPlan.choose(_dims(TINY), TINY.dilations, 1, topology="split")
    yield "fused", kc.KernelPlan.choose(_dims(TINY), TINY.dilations, 1, topology="fused")
    # Groups with an unused layer slot, output parts with padding rows, several passes.
    yield "split, 2 groups, 3 parts, 32 threads", kc.KernelPlan(
        n_layers=3, residual=8, skip=16, output=16, dilations=TINY.dilations, threads=32, groups=2,
        parts=3, fused=False, shared_exchange=False)


@on_host
@pytest.mark.parametrize("name, plan", list(_plans()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_packed_matrix_is_its_source_element_by_element(name, plan):
    w = checks._random_weights(TINY)
    buf = kc.pack_weights(plan, w)
    lay, ph = plan.weight_layout, plan.phases
    L, R, S, A = TINY.n_layers, TINY.residual_channels, TINY.skip_channels, TINY.output_channels
    G, K, LG, AK = plan.groups, plan.parts, plan.layers_per_group, plan.rows_per_part
    covered = np.zeros(buf.size, bool)

    def segment(name, shape):
        size = int(np.prod(shape))
        covered[lay[name]:lay[name] + size] = True
        return buf[lay[name]:lay[name] + size].reshape(shape)

    def phase_shape(phase):
        return (phase.passes, phase.steps // kc.VECTOR, phase.threads, kc.VECTOR)

    np.testing.assert_array_equal(segment("embedding", (256, R)), w["embedding"])
    np.testing.assert_array_equal(segment("dilated_b", (L, 2 * R)), w["dilated_b"])
    np.testing.assert_array_equal(segment("res_b", (L, R)), w["res_b"])
    np.testing.assert_array_equal(segment("out2_b", (256,)), w["out2_b"])
    out1_b = segment("out1_b", (K * AK,))
    np.testing.assert_array_equal(out1_b[:A], w["out1_b"])
    assert not out1_b[A:].any()

    gp = ph["gate"]
    gate = segment("gate", (G * LG, gp.passes, 2) + phase_shape(gp)[1:])
    res = segment("res", (G * LG,) + phase_shape(ph["res"]))
    pre = segment("pre", (G,) + phase_shape(ph["pre"]))
    skip = segment("skip", (G,) + phase_shape(ph["skip"]))
    skip_b = segment("skip_b", (G, S))
    for g, (first, end) in enumerate(plan.group_layers):
        w0 = _unpack(ph["pre"], pre[g])
        ws = _unpack(ph["skip"], skip[g])
        for ll in range(LG):
            slot, l = g * LG + ll, first + ll
            if l < end:
                w1 = w["dilated_w"][l, 1]
                _assert_holds(gp, gate[slot, :, 0], w1[:R], f"group {g} layer {l}: tanh rows of W1")
                _assert_holds(gp, gate[slot, :, 1], w1[R:], f"group {g} layer {l}: sigmoid rows of W1")
                _assert_holds(ph["res"], res[slot], w["res_w"][l], f"group {g} layer {l}: residual")
                np.testing.assert_array_equal(w0[ll * 2 * R:(ll + 1) * 2 * R, :R], w["dilated_w"][l, 0],
                                              err_msg=f"group {g} layer {l}: W0")
                np.testing.assert_array_equal(ws[:S, ll * R:(ll + 1) * R], w["skip_w"][l],
                                              err_msg=f"group {g} layer {l}: skip")
            else:  # a slot past the group's last layer is never run, and holds zeros
                assert not gate[slot].any() and not res[slot].any(), f"group {g} slot {ll}"
                assert not w0[ll * 2 * R:(ll + 1) * 2 * R].any() and not ws[:, ll * R:(ll + 1) * R].any()
        assert not w0[:, R:].any() and not w0[LG * 2 * R:].any() and not ws[S:].any()
        np.testing.assert_allclose(skip_b[g], w["skip_b"][first:end].sum(axis=0), rtol=1e-6)

    out1 = segment("out1", (K,) + phase_shape(ph["out1"]))
    out2 = segment("out2", (K,) + phase_shape(ph["out2"]))
    out1_w = np.zeros((K * AK, S), np.float32)
    out1_w[:A] = w["out1_w"]
    out2_w = np.zeros((256, K * AK), np.float32)
    out2_w[:, :A] = w["out2_w"]
    for k in range(K):
        _assert_holds(ph["out1"], out1[k], out1_w[k * AK:(k + 1) * AK], f"part {k}: out1 rows")
        _assert_holds(ph["out2"], out2[k], out2_w[:, k * AK:(k + 1) * AK], f"part {k}: out2 columns")
    if plan.tail:
        _assert_holds(ph["tail_skip"], segment("tail_skip", phase_shape(ph["tail_skip"])), w["skip_w"][L - 1],
                      "tail group: skip")
    assert not buf[~covered].any(), "non-zero values outside every segment"


@on_host
def test_bad_options_and_inputs_are_rejected_with_clear_errors():
    w = checks._sharp_model(TINY).export_weights()
    with pytest.raises(ValueError, match="topology must be"):
        kc.CudaKernel(w, topology="ring")
    with pytest.raises(ValueError, match="threads must be a power of 2"):
        kc.CudaKernel(w, threads=48)
    with pytest.raises(ValueError, match="dilated_w has shape"):
        kc.CudaKernel(dict(w, dilated_w=np.ascontiguousarray(w["dilated_w"][:, :, :5])))
    kernel = kc.CudaKernel(w)
    state = kernel.init_state(2)
    cond = np.zeros((2, 5, 3, 16), np.float32)
    uniforms = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"cond has shape \(2, 5, 3, 8\)"):
        kernel.generate(cond[..., :8], uniforms, state)
    with pytest.raises(ValueError, match="uniforms has shape"):
        kernel.generate(cond, uniforms[:, :4], state)
    with pytest.raises(ValueError, match="exactly one of"):
        kernel.generate(cond, uniforms, state, teacher=np.zeros((2, 5), np.int32))
    with pytest.raises(ValueError, match="state.history has shape"):
        kernel.generate(cond, uniforms, kernel.init_state(3))
    with pytest.raises(ValueError, match="cond has dtype float64"):
        kernel.generate(cond.astype(np.float64), uniforms, state)
    with pytest.raises(ValueError, match="sharpness has shape"):
        kernel.generate(cond, uniforms, state, sharpness=np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="sharpness must be finite and > 0"):
        kernel.generate(cond, uniforms, state, sharpness=np.full((2, 5), np.nan, np.float32))


@on_host
def test_lpc_plan_packs_both_embeddings_and_keeps_the_signal_on_chip():
    w = checks._sharp_model(TINY_LPC).export_weights()
    assert w["embedding_signal"].any() and w["embedding_prediction"].any()
    plan = kc.KernelPlan.choose(validate_exported(w), TINY_LPC.dilations, 1, topology="fused")
    assert plan.lpc_order == 16 and "LPC inputs of order 16" in plan.describe()
    buf, lay, R = kc.pack_weights(plan, w), plan.weight_layout, TINY_LPC.residual_channels
    both = buf[lay["lpc_embedding"]:lay["lpc_embedding"] + 2 * 256 * R].reshape(2, 256, R)
    np.testing.assert_array_equal(both[0], w["embedding_signal"])
    np.testing.assert_array_equal(both[1], w["embedding_prediction"])
    np.testing.assert_array_equal(buf[lay["embedding"]:lay["embedding"] + 256 * R], w["embedding"].ravel())
    # Shared memory per utterance: the coefficients, then the doubled float64 ring, 8-byte aligned.
    m = plan.smem_layout
    assert m["signal"] - m["lpc"] >= 16 and m["per_utterance"] - m["signal"] >= 4 * 16
    assert (m["utterances"] + m["signal"]) % 2 == 0
    # Without LPCNet's inputs neither takes any room.
    plain = kc.KernelPlan.choose(_dims(TINY), TINY.dilations, 1, topology="fused")
    assert plain.lpc_order == 0 and plain.weight_layout["lpc_embedding"] == plain.weight_layout["dilated_b"]
    assert plain.smem_layout["lpc"] == plain.smem_layout["signal"] == plain.smem_layout["per_utterance"]


@on_host
def test_lpc_inputs_are_checked_with_clear_errors():
    kernel = kc.CudaKernel(checks._sharp_model(TINY_LPC).export_weights())
    assert kernel.lpc_order == 16 and kernel.init_state(2).signal.shape == (2, 16)
    cond, uniforms = np.zeros((2, 5, 3, 16), np.float32), np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"pass lpc \(B, T, 16\)"):
        kernel.generate(cond, uniforms, kernel.init_state(2))
    with pytest.raises(ValueError, match="lpc has shape"):
        kernel.generate(cond, uniforms, kernel.init_state(2), lpc=np.zeros((2, 5, 8), np.float32))
    with pytest.raises(ValueError, match="state.signal has shape"):
        kernel.generate(cond, uniforms, KernelState.zeros(2, TINY_LPC.dilations, 8),
                        lpc=np.zeros((2, 5, 16), np.float32))
    plain = kc.CudaKernel(checks._sharp_model(TINY).export_weights())
    with pytest.raises(ValueError, match="lpc goes with a network with LPCNet's inputs"):
        plain.generate(cond, uniforms, plain.init_state(2), lpc=np.zeros((2, 5, 16), np.float32))


@on_host
def test_without_a_gpu_generate_says_so():
    if kc.cuda_usable():
        pytest.skip("a GPU is present")
    kernel = kc.CudaKernel(checks._sharp_model(TINY).export_weights())
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        kernel.generate(np.zeros((1, 2, 3, 16), np.float32), np.zeros((1, 2), np.float32),
                        kernel.init_state(1))


# ---- host: PTX for the H200 ------------------------------------------------------------------


@on_host
@pytest.mark.parametrize("config, batch, topology", [
    (WaveNetConfig.medium(), 1, "split"),  # staged weights, global hand-offs, spin waits
    (WaveNetConfig(), 600, "fused"),  # 4 utterances per block, shared hand-offs
    (WaveNetConfig(lpc_order=16, lpc_inputs=True), 1, "fused"),  # the predictor in the loop
    (WaveNetConfig(lpc_order=16, lpc_inputs=True), 1, "split"),
    (WaveNetConfig(residual_channels=48, lpc_order=16, cond_blocks=2), 1, "auto"),  # a wide voice
])
def test_kernel_compiles_for_sm90_without_local_memory(config, batch, topology):
    from cuda.pathfinder import DynamicLibNotFoundError, load_nvidia_dynamic_lib

    try:
        for library in ("nvvm", "nvrtc"):
            load_nvidia_dynamic_lib(library)
    except DynamicLibNotFoundError as e:
        pytest.skip(f"NVVM/NVRTC are not installed (pip install 'numba-cuda[cu13]'): {e}")
    plan = kc.KernelPlan.choose(_dims(config), config.dilations, batch, topology=topology)
    ptx = checks.ptx_for(plan, cc=(9, 0))
    assert ".target sm_90" in ptx
    assert checks.local_memory_lines(ptx) == []
    assert checks.static_shared_lines(ptx) == []  # one dynamic shared memory, aliased by type
    # Every counter poll and hand-off load is re-issued inside the step loop, each counter on
    # every poll, and hand-offs through global memory use the ordered loads.
    assert checks.unlooped_handoff_loads(ptx) == []
    assert checks.hoisted_polls(ptx) == []
    assert checks.missing_ordered_loads(ptx, plan) == []
    # The predictor's products are rounded on their own, never fused with the sum.
    assert ptx.count("mul.rn.f64") == plan.lpc_order and "fma.rn.f64" not in ptx
    if not plan.fused:
        assert "ld.acquire.gpu.global" in ptx and "ld.global.cg" in ptx and "atom.global.exch" in ptx


# Hand-made PTX of a step loop that waits on a counter: the poll as written (the counter
# re-read in the spin loop) and as a compiler could hoist it (read once, then a spin on the
# register). The checks must tell them apart.
POLL_IN_LOOP = """
$L__BB0_1:
	bar.sync 	0;
$L__BB0_2:
	ld.acquire.gpu.global.b32 	%r1, [%rd1];
	add.s32 	%r2, %r2, 1;
	setp.lt.s32 	%p1, %r1, %r3;
	@%p1 bra 	$L__BB0_2;
	ld.global.cg.b32 	%r4, [%rd2];
	bar.sync 	0;
	setp.lt.s32 	%p2, %r5, %r6;
	@%p2 bra 	$L__BB0_1;
	ret;
"""
POLL_HOISTED = """
$L__BB0_1:
	bar.sync 	0;
	ld.acquire.gpu.global.b32 	%r1, [%rd1];
	setp.lt.s32 	%p1, %r1, %r3;
$L__BB0_2:
	add.s32 	%r2, %r2, 1;
	@%p1 bra 	$L__BB0_2;
	ld.global.cg.b32 	%r4, [%rd2];
	bar.sync 	0;
	setp.lt.s32 	%p2, %r5, %r6;
	@%p2 bra 	$L__BB0_1;
	ret;
"""


# The poll as compilers rotate it: the counter read once before the spin loop and again in it.
POLL_ROTATED = POLL_HOISTED.replace("\t@%p1 bra \t$L__BB0_2;",
                                    "\tld.acquire.gpu.global.b32 \t%r1, [%rd1];\n\tsetp.lt.s32 \t%p1, %r1, %r3;\n"
                                    "\t@%p1 bra \t$L__BB0_2;")


def test_ptx_checks_catch_a_counter_read_once_before_its_poll_loop():
    for ptx in (POLL_IN_LOOP, POLL_ROTATED):
        assert checks.unlooped_handoff_loads(ptx) == [] and checks.hoisted_polls(ptx) == []
    # Hoisted out of the poll loop, the load is still inside the step loop: the older check
    # alone passes it; the poll check does not.
    assert checks.unlooped_handoff_loads(POLL_HOISTED) == []
    assert checks.hoisted_polls(POLL_HOISTED) == ["ld.acquire.gpu.global.b32 \t%r1, [%rd1];"]
    # Hoisted out of the step loop too, both checks catch it.
    once = POLL_HOISTED.replace("$L__BB0_1:\n\tbar.sync \t0;\n\tld.acquire.gpu.global.b32 \t%r1, [%rd1];",
                                "\tld.acquire.gpu.global.b32 \t%r1, [%rd1];\n$L__BB0_1:\n\tbar.sync \t0;")
    assert checks.unlooped_handoff_loads(once) and checks.hoisted_polls(once)


def test_ptx_checks_catch_a_static_shared_array():
    ptx = (".visible .shared .align 4 .b8 _cudapy_smem_2[12];\n"
           ".extern .shared .align 4 .b8 _cudapy_smem_1[];\n\tst.shared.u32 [%r1], %r2;")
    assert checks.static_shared_lines(ptx) == [".visible .shared .align 4 .b8 _cudapy_smem_2[12];"]


def test_ptx_checks_require_ordered_loads_for_global_hand_offs():
    config = WaveNetConfig()
    split = kc.KernelPlan.choose(_dims(config), config.dilations, 1, topology="split")
    fused = kc.KernelPlan.choose(_dims(config), config.dilations, 600, topology="fused")
    assert not split.shared_exchange and fused.shared_exchange
    assert checks.missing_ordered_loads(POLL_IN_LOOP, split) == []
    plain = POLL_IN_LOOP.replace("ld.global.cg", "ld.global").replace("ld.acquire.gpu.global", "ld.global")
    assert checks.missing_ordered_loads(plain, split) == ["ld.acquire", "ld.global.cg"]
    assert checks.missing_ordered_loads(plain, fused) == []  # shared-memory hand-offs need neither


# ---- simulator -----------------------------------------------------------------------------
# The simulator runs the kernel's Python, with stand-ins for what only a GPU has: warp shuffles,
# vector loads, acquire and L2-only loads. These tests (named "stand_ins") check the kernel's
# arithmetic and hand-off logic; the code a GPU runs is only compiled here (PTX checks above)
# and compared with the reference by the cuda-marked tests below.


@on_host
def test_simulator_suite():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-x", "-k", "simulator",
                           "-p", "no:cacheprovider"], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


def _simulated(config):
    if SIMULATOR:
        # The simulator's scheduler busy-waits for blocked threads; switch the GIL sooner.
        sys.setswitchinterval(5e-5)
    return checks._sharp_model(config)


@pytest.fixture(scope="module")
def sharp_tiny():
    return _simulated(TINY)


@in_simulator
def test_simulator_stand_ins_samples_equal_reference_and_chunks_equal_one_shot(sharp_tiny):
    model = sharp_tiny
    cond, expected, uniforms = _inputs(model, batch=1, steps=10)
    # One thread per row (max_lanes=1) keeps the simulator's barriers few; the lanes and
    # shuffles are covered by the tests below.
    kernel = kc.CudaKernel(model.export_weights(), topology="fused", exchange="shared",
                           threads=32, max_lanes=1)
    whole, whole_state = kernel.generate(cond.numpy(), uniforms.numpy(), kernel.init_state(1))
    np.testing.assert_array_equal(whole, expected.numpy())
    assert whole.dtype == np.int32 and whole_state.t.tolist() == [10]

    state, pieces, start = kernel.init_state(1), [], 0
    for n in (1, 4, 5):  # boundaries at odd and even ring positions
        given, before = state, state.copy()
        part, state = kernel.generate(cond[:, start:start + n].numpy(),
                                      uniforms[:, start:start + n].numpy(), given)
        np.testing.assert_array_equal(given.history, before.history)  # not modified
        pieces.append(part)
        start += n
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    np.testing.assert_array_equal(state.history, whole_state.history)
    assert state.last_class.tolist() == whole_state.last_class.tolist() == [whole[0, -1]]

    # The history is the reference's ring buffers.
    reference_state = model.generate(cond, uniforms)[1]
    np.testing.assert_allclose(state.history, KernelState.from_torch(reference_state).history,
                               rtol=1e-4, atol=1e-5)


@in_simulator
def test_simulator_stand_ins_teacher_forced_logits_with_shuffled_lanes(sharp_tiny):
    model = sharp_tiny
    cond, expected, _ = _inputs(model, batch=1, steps=6, seed=2)
    kernel = kc.CudaKernel(model.export_weights(), topology="fused", exchange="shared", threads=32)
    assert kernel.plan(1).phases["gate"].lanes == 4  # the lane sums really run
    _, _, reference = model.generate(cond, None, teacher=expected, return_logits=True)
    classes, state, logits = kernel.generate(cond.numpy(), None, kernel.init_state(1),
                                             teacher=expected.numpy(), return_logits=True)
    np.testing.assert_array_equal(classes, expected.numpy())
    assert logits.shape == (1, 6, 256)
    np.testing.assert_allclose(logits, reference.numpy(), rtol=0, atol=kc.LOGITS_ATOL)


@in_simulator
def test_simulator_stand_ins_split_roles_in_one_block(sharp_tiny):
    # Every role of a split plan (two chain groups, the second a one-layer tail with staged
    # skip weights, and two output parts) in one block, handing off through global memory
    # with step counters, acquire polls and L2 loads, as between the blocks of a split launch.
    model = sharp_tiny
    plan = checks._split_roles_in_one_block(model.export_weights())
    assert (plan.groups, plan.parts, plan.tail, plan.shared_exchange) == (2, 2, True, False)
    kernel = kc.CudaKernel(model.export_weights(), plan=plan)
    cond, expected, uniforms = _inputs(model, batch=1, steps=8, seed=3)
    state, pieces = kernel.init_state(1), []
    for start, n in ((0, 3), (3, 5)):
        part, state = kernel.generate(cond[:, start:start + n].numpy(),
                                      uniforms[:, start:start + n].numpy(), state)
        pieces.append(part)
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), expected.numpy())
    _, _, reference = model.generate(cond, None, teacher=expected, return_logits=True)
    _, _, logits = kernel.generate(cond.numpy(), None, kernel.init_state(1),
                                   teacher=expected.numpy(), return_logits=True)
    np.testing.assert_allclose(logits, reference.numpy(), rtol=0, atol=kc.LOGITS_ATOL)


@in_simulator
def test_simulator_stand_ins_several_utterances_per_block(sharp_tiny):
    # Three utterances, two per block: the second block has one idle slot.
    model = sharp_tiny
    cond, expected, uniforms = _inputs(model, batch=3, steps=5, seed=4)
    kernel = kc.CudaKernel(model.export_weights(), topology="fused", threads=32, max_lanes=1,
                           utterances_per_block=2)
    assert kernel.plan(3).utterances_per_block == 2
    classes, state = kernel.generate(cond.numpy(), uniforms.numpy(), kernel.init_state(3))
    np.testing.assert_array_equal(classes, expected.numpy())
    assert state.t.tolist() == [5, 5, 5]


@in_simulator
def test_simulator_stand_ins_sharpened_sampling_equals_reference(sharp_tiny):
    # Voicing-dependent sampling: each sample drawn from softmax(sharpness * logits).
    model = sharp_tiny
    kernel = kc.CudaKernel(model.export_weights(), topology="fused", threads=32, max_lanes=1,
                           utterances_per_block=2)
    assert checks._compare(model, kernel, batch=3, steps=6, chunks=[2, 4], seed=5, sharpen=True) == ""


@in_simulator
def test_simulator_stand_ins_start_from_silence_mu_law_class_128(sharp_tiny):
    # The first sample's input is mu-law's zero, class 128, as in the reference, not class 0.
    from tts.vocoder.wavenet import START_CLASS

    model = sharp_tiny
    kernel = kc.CudaKernel(model.export_weights(), topology="fused", threads=32, max_lanes=1)
    assert START_CLASS == 128 and kernel.init_state(1).last_class.tolist() == [128]
    cond, _, _ = _inputs(model, batch=1, steps=1, seed=6)
    _, _, logits = kernel.generate(cond.numpy(), None, kernel.init_state(1),
                                   teacher=np.zeros((1, 1), np.int32), return_logits=True)
    silence = model.generate(cond, None, teacher=torch.zeros(1, 1, dtype=torch.long), return_logits=True)[2]
    zero_state = model.init_state(1)
    zero_state.last_class[:] = 0
    zero = model.generate(cond, None, zero_state, teacher=torch.zeros(1, 1, dtype=torch.long), return_logits=True)[2]
    np.testing.assert_allclose(logits, silence.numpy(), rtol=0, atol=kc.LOGITS_ATOL)
    assert np.abs(logits - zero.numpy()).max() > 10 * kc.LOGITS_ATOL


@pytest.fixture(scope="module")
def sharp_tiny_lpc():
    return _simulated(TINY_LPC)


@in_simulator
def test_simulator_stand_ins_lpc_inputs_equal_reference_across_chunks(sharp_tiny_lpc):
    # LPCNet's inputs: the predictor and the synthesis filter in the loop, coefficients that
    # change every 8 samples, 40 samples in chunks that leave the 16-sample signal ring at
    # different positions (and wrap it twice); the classes, the carried signal (exactly) and
    # the teacher-forced logits against the reference.
    model = sharp_tiny_lpc
    kernel = kc.CudaKernel(model.export_weights(), topology="fused", exchange="shared",
                           threads=32, max_lanes=1)
    assert checks._compare(model, kernel, batch=1, steps=40, chunks=[3, 17, 20], seed=7, logits=True) == ""
    # The state's signal is the synthesis filter's output from the excitation the kernel drew.
    g = torch.Generator().manual_seed(7)
    cond = model.conditioning(torch.rand(1, 1, model.config.n_mels, generator=g)).detach()[:, :24].numpy()
    lpc = checks.varying_coefficients(torch.rand(1, 4, model.config.n_mels, generator=g), 24, 16)
    classes, state = kernel.generate(cond, torch.rand(1, 24, generator=g).numpy(), kernel.init_state(1), lpc=lpc)
    audio, _ = lpc_synthesis(mu_law_decode(classes[0]), lpc[0], 1)
    np.testing.assert_allclose(state.signal[0], audio[-16:], rtol=1e-5, atol=1e-6)


@in_simulator
def test_simulator_stand_ins_lpc_inputs_split_roles_and_several_utterances_per_block(sharp_tiny_lpc):
    # The predictor in the sampler's block of a split plan's roles (global hand-offs), and in
    # a block of two utterances with an idle slot, whose signal must not leak into the state.
    model = sharp_tiny_lpc
    split = kc.CudaKernel(model.export_weights(), plan=checks._split_roles_in_one_block(model.export_weights()))
    assert split.plan(1).lpc_order == 16
    assert checks._compare(model, split, batch=1, steps=12, chunks=[5, 7], seed=8) == ""
    pair = kc.CudaKernel(model.export_weights(), topology="fused", threads=32, max_lanes=1,
                         utterances_per_block=2)
    assert pair.plan(3).utterances_per_block == 2
    assert checks._compare(model, pair, batch=3, steps=8, chunks=[3, 5], seed=9, sharpen=True) == ""


# ---- real GPU --------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("config, options, steps", [
    (WaveNetConfig(), dict(topology="fused"), 1200),
    (WaveNetConfig(), dict(topology="split"), 600),
    (WaveNetConfig(), dict(topology="fused", utterances_per_block=2), 300),
    (WaveNetConfig.medium(), dict(topology="split"), 600),
    (WaveNetConfig.medium(), dict(topology="fused"), 300),
    (WaveNetConfig(lpc_order=16, lpc_inputs=True), dict(topology="fused"), 600),
    (WaveNetConfig(lpc_order=16, lpc_inputs=True), dict(topology="split"), 600),
])
def test_gpu_matches_reference(config, options, steps):
    model = checks._sharp_model(config)
    kernel = kc.CudaKernel(model.export_weights(), **options)
    for batch, chunks in ((1, [steps // 3, steps - steps // 3]), (3, None)):
        assert checks._compare(model, kernel, batch, steps, chunks, logits=True) == ""
    assert checks._compare(model, kernel, 2, steps // 2, sharpen=True) == ""  # voicing-dependent sampling
    _, compiled, _ = kernel._prepare(1)
    assert compiled.get_local_mem_per_thread() == 0  # no register spills in the SASS either


@pytest.mark.cuda
def test_gpu_accepts_device_arrays():
    model = checks._sharp_model(TINY)
    cond, expected, uniforms = _inputs(model, batch=2, steps=50)
    kernel = kc.CudaKernel(model.export_weights())
    classes, _ = kernel.generate(cond.cuda(), uniforms.cuda(), kernel.init_state(2))
    np.testing.assert_array_equal(classes, expected.numpy())


@pytest.mark.cuda
def test_gpu_runs_every_self_test_variant_with_real_shuffles_and_loads():
    model = checks._sharp_model(TINY)
    for kernel, batch, steps, chunks in checks.self_test_variants(model.export_weights()):
        assert checks._compare(model, kernel, batch, steps, chunks, logits=True) == "", kernel.plan(batch).describe()


@pytest.mark.cuda
def test_gpu_split_kernel_gives_up_on_a_spin_limit_and_says_so(monkeypatch):
    from tts.kernels import cuda as cuda_module

    model = checks._sharp_model(WaveNetConfig())
    cond, _, uniforms = _inputs(model, batch=1, steps=200)
    kernel = kc.CudaKernel(model.export_weights(), topology="split")
    monkeypatch.setattr(cuda_module, "SPIN_LIMIT", 0)  # one unmet poll is enough to give up
    with pytest.raises(RuntimeError, match="timed out waiting for another"):
        kernel.generate(cond.numpy(), uniforms.numpy(), kernel.init_state(1))
    monkeypatch.undo()
    kernel.generate(cond.numpy(), uniforms.numpy(), kernel.init_state(1))  # the GPU is still usable


@pytest.mark.cuda
def test_gpu_split_kernel_refuses_more_blocks_than_can_be_resident():
    model = checks._sharp_model(WaveNetConfig())
    batch = 4096  # thousands of pipelines of several blocks: far past any GPU's resident blocks
    cond, _, uniforms = _inputs(model, batch=batch, steps=2)
    kernel = kc.CudaKernel(model.export_weights(), topology="split")
    with pytest.raises(RuntimeError, match="blocks resident at once and the GPU holds"):
        kernel.generate(cond.numpy(), uniforms.numpy(), kernel.init_state(batch))
