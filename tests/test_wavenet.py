"""WaveNet vocoder: teacher-forced vs incremental equivalence, chunking, sampling, the export
contract, training, configs."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from tts.audio import mu_law_encode
from tts.vocoder.wavenet import (
    START_CLASS,
    WaveNet,
    WaveNetConfig,
    WaveNetState,
    sample_classes,
    teacher_inputs,
    validate_exported,
)

TINY = WaveNetConfig(n_layers=4, residual_channels=8, skip_channels=16, output_channels=16,
                     max_dilation=4, cond_channels=8)
FRAMES = 3
SAMPLES = FRAMES * TINY.hop_length


def tiny_model(seed: int = 0) -> WaveNet:
    torch.manual_seed(seed)
    return WaveNet(TINY).eval()


def random_inputs(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, FRAMES, TINY.n_mels, generator=g)  # (B, T_frames, 80)
    audio = torch.randint(0, 256, (batch, SAMPLES), generator=g)  # (B, T)
    uniforms = torch.rand(batch, SAMPLES, generator=g)  # (B, T)
    return mel, audio, uniforms


# ---- the training forward against the plain convolutional network ---------------------


@pytest.mark.parametrize("frames", [1, 3])
def test_training_forward_and_gradients_equal_the_convolutional_network(frames):
    torch.manual_seed(0)
    # Upsampling with three stages, a dilation longer than the crop, and a smoothing that is
    # not the initial moving average: every place where the reformulation could slip shows.
    config = WaveNetConfig(n_layers=5, residual_channels=8, skip_channels=16, output_channels=16,
                           max_dilation=512, cond_channels=8, upsample_scales=(2, 5, 20))
    model = WaveNet(config)
    with torch.no_grad():
        for conv in model.upsample_convs:
            conv.weight.normal_()
    mel = torch.rand(2, frames, 80)
    audio = torch.randint(0, 256, (2, frames * 200))
    inputs = teacher_inputs(audio)
    expected = model.forward_reference(inputs, mel)
    got = model(inputs, mel)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(expected)  # a loss that weighs every logit differently
    params = list(model.parameters())
    grads = torch.autograd.grad((expected * weights).sum(), params, allow_unused=True)
    new_grads = torch.autograd.grad((got * weights).sum(), params, allow_unused=True)
    for (name, p), g, n in zip(model.named_parameters(), grads, new_grads):
        # The last layer's residual conv feeds nothing, in both: no gradient at all.
        assert (g is None) == (n is None) == name.startswith(f"res.{config.n_layers - 1}."), name
        if g is not None:
            torch.testing.assert_close(n, g, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


# ---- incremental vs teacher-forced ------------------------------------------------------


def test_teacher_forced_generation_matches_forward():
    model = tiny_model()
    mel, audio, _ = random_inputs()
    with torch.no_grad():
        expected = model(teacher_inputs(audio), mel)  # (B, T, 256)
    cond = model.conditioning(mel).detach()
    classes, state, logits = model.generate(cond, None, model.init_state(2), teacher=audio,
                                            return_logits=True)
    assert logits.shape == expected.shape == (2, SAMPLES, 256)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(classes, audio)
    assert state.t == SAMPLES
    assert torch.equal(state.last_class, audio[:, -1])


def test_sampling_temperature_divides_the_generated_logits_and_every_kernel_follows():
    from dataclasses import replace

    from tts.kernels import load_backend

    model = tiny_model()
    cooled = WaveNet(replace(TINY, temperature=0.5)).eval()
    cooled.load_state_dict(model.state_dict())
    mel, audio, uniforms = random_inputs()
    with torch.no_grad():
        assert torch.equal(cooled(teacher_inputs(audio), mel), model(teacher_inputs(audio), mel))  # training: untouched
    cond = model.conditioning(mel).detach()
    _, _, logits = model.generate(cond, None, model.init_state(2), teacher=audio, return_logits=True)
    _, _, cooled_logits = cooled.generate(cond, None, cooled.init_state(2), teacher=audio, return_logits=True)
    torch.testing.assert_close(cooled_logits, 2 * logits, atol=1e-5, rtol=1e-5)
    reference, _ = cooled.generate(cond, uniforms, cooled.init_state(2))
    kernel = load_backend("numba", cooled)
    classes, _ = kernel.generate(cond.numpy(), uniforms.numpy(), kernel.init_state(2))
    assert np.array_equal(np.asarray(classes), reference.numpy())
    with pytest.raises(ValueError, match="temperature"):
        WaveNetConfig(temperature=0.0)


def test_forward_is_causal_with_the_stated_receptive_field():
    model = tiny_model()
    mel, audio, _ = random_inputs(batch=1)
    inputs = teacher_inputs(audio)
    j = 100
    changed = inputs.clone()
    changed[0, j] = (changed[0, j] + 57) % 256
    with torch.no_grad():
        diff = (model(inputs, mel) - model(changed, mel)).abs().amax(dim=-1)[0]  # (T,)
    affected = torch.nonzero(diff > 0).flatten()
    rf = TINY.receptive_field
    assert rf == 1 + 1 + 2 + 4 + 1
    assert affected.min().item() == j
    assert affected.max().item() == j + rf - 1


# ---- chunked generation -------------------------------------------------------------------


@pytest.mark.parametrize("splits", [
    [1, 2, 3, 594],  # chunks shorter than the largest dilation
    [3, 3, 3, 3, 588],
    [250, 350],
    [599, 1],
])
def test_chunked_generation_equals_one_shot(splits):
    assert sum(splits) == SAMPLES
    model = tiny_model()
    mel, _, uniforms = random_inputs()
    cond = model.conditioning(mel).detach()
    whole, whole_state, whole_logits = model.generate(cond, uniforms, model.init_state(2),
                                                      return_logits=True)

    state = model.init_state(2)
    pieces, piece_logits, start = [], [], 0
    for n in splits:
        classes, state, logits = model.generate(cond[:, start:start + n], uniforms[:, start:start + n],
                                                state, return_logits=True)
        pieces.append(classes)
        piece_logits.append(logits)
        start += n
    assert torch.equal(torch.cat(pieces, dim=1), whole)
    assert torch.equal(torch.cat(piece_logits, dim=1), whole_logits)
    assert state.t == whole_state.t == SAMPLES
    assert torch.equal(state.last_class, whole_state.last_class)
    for a, b in zip(state.buffers, whole_state.buffers):
        assert torch.equal(a, b)


def test_generate_leaves_the_given_state_untouched():
    model = tiny_model()
    mel, _, uniforms = random_inputs()
    cond = model.conditioning(mel).detach()
    state = model.init_state(2)
    before = state.clone()
    model.generate(cond[:, :10], uniforms[:, :10], state)
    assert state.t == before.t == 0
    assert all(torch.equal(a, b) for a, b in zip(state.buffers, before.buffers))


def test_sampled_generation_is_deterministic_given_uniforms_and_differs_otherwise():
    model = tiny_model()
    mel, _, uniforms = random_inputs()
    cond = model.conditioning(mel).detach()
    a, _ = model.generate(cond, uniforms)
    b, _ = model.generate(cond, uniforms.clone())
    c, _ = model.generate(cond, torch.rand_like(uniforms))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_generate_rejects_bad_inputs():
    model = tiny_model()
    mel, audio, uniforms = random_inputs()
    cond = model.conditioning(mel).detach()
    with pytest.raises(ValueError, match="cond has shape"):
        model.generate(cond[:, :, :2], uniforms)
    with pytest.raises(ValueError, match="uniforms has shape"):
        model.generate(cond, uniforms[:, :5])
    with pytest.raises(ValueError, match="exactly one of"):
        model.generate(cond, uniforms, teacher=audio)
    with pytest.raises(ValueError, match="batch size"):
        model.generate(cond, uniforms, model.init_state(3))
    with pytest.raises(ValueError, match="mel has 3 frames"):
        model(audio[:, :-1], mel)


# ---- inverse-CDF sampling -----------------------------------------------------------------


def test_inverse_cdf_sampling_on_hand_made_distributions():
    # Four equal classes (1, 3, 200, 255) and zero elsewhere: exact cdf steps of 0.25.
    logits = torch.full((256,), float("-inf"))
    logits[[1, 3, 200, 255]] = 0.0
    u = torch.tensor([0.0, 0.1, 0.25, 0.4999, 0.5, 0.75, 0.9999999])
    got = sample_classes(logits.expand(len(u), 256), u)
    # The smallest k with cdf[k] > u: a u exactly on a step goes to the next class.
    assert got.tolist() == [1, 1, 3, 3, 200, 255, 255]

    one_hot = torch.full((256,), -1e9)
    one_hot[42] = 0.0
    u = torch.tensor([0.0, 0.5, 0.9999999])
    assert sample_classes(one_hot.expand(3, 256), u).tolist() == [42, 42, 42]


def test_inverse_cdf_sampling_matches_searchsorted_and_clamps():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 256, generator=g) * 3
    u = torch.rand(64, generator=g)
    cdf = np.cumsum(torch.softmax(logits, -1).numpy(), axis=-1)
    expected = [min(np.searchsorted(cdf[i], u[i].item(), side="right"), 255) for i in range(64)]
    assert sample_classes(logits, u).tolist() == expected
    # u at or above the last cdf entry (which rounding may leave under 1) still gives 255.
    assert sample_classes(torch.zeros(2, 256), torch.tensor([1.0, 0.99999994])).tolist() == [255, 255]


# ---- export contract ----------------------------------------------------------------------


def numpy_generate_logits(w: dict, cond: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The kernel math written from the export_weights docstring alone: one utterance,
    teacher-forced with `previous[t]` the class of sample t-1. -> logits (T, 256)."""
    R = w["embedding"].shape[1]
    history = [[] for _ in w["dilations"]]  # each layer's inputs so far
    out = []
    for t, prev in enumerate(previous):
        x = w["embedding"][prev]
        skip = np.zeros(w["skip_w"].shape[1], np.float32)
        for l, d in enumerate(w["dilations"]):
            past = history[l][t - d] if t >= d else np.zeros(R, np.float32)
            history[l].append(x)
            h = w["dilated_w"][l, 0] @ past + w["dilated_w"][l, 1] @ x + w["dilated_b"][l] + cond[t, l]
            z = np.tanh(h[:R]) * (1.0 / (1.0 + np.exp(-h[R:])))
            x = x + w["res_w"][l] @ z + w["res_b"][l]
            skip = skip + w["skip_w"][l] @ z + w["skip_b"][l]
        hidden = np.maximum(w["out1_w"] @ np.maximum(skip, 0) + w["out1_b"], 0)
        out.append(w["out2_w"] @ hidden + w["out2_b"])
    return np.stack(out)


def test_numpy_reimplementation_from_export_matches_torch_generator():
    model = tiny_model()
    mel, audio, _ = random_inputs(batch=1)
    weights = model.export_weights()
    cond = model.export_conditioning(mel[0].numpy())
    dims = validate_exported(weights, cond)
    assert dims == (4, 8, 16, 16, 256, 4, 0)  # lpc_order 0: no LPCNet inputs
    assert cond.shape == (SAMPLES, 4, 16) and cond.dtype == np.float32 and cond.flags.c_contiguous
    for name, arr in weights.items():
        assert arr.flags.c_contiguous, name
        assert arr.dtype == (np.int32 if name == "dilations" else np.float32), name
    assert weights["dilations"].tolist() == [1, 2, 4, 1]

    expected = numpy_generate_logits(weights, cond, teacher_inputs(audio)[0].numpy())
    _, _, logits = model.generate(torch.from_numpy(cond)[None], None, teacher=audio, return_logits=True)
    np.testing.assert_allclose(logits[0].numpy(), expected, atol=1e-5, rtol=1e-5)
    assert START_CLASS == 128 and teacher_inputs(audio)[0, 0] == START_CLASS


def test_validator_names_the_bad_tensor():
    model = tiny_model()
    weights = model.export_weights()

    bad = dict(weights, dilated_w=np.zeros((4, 2, 16, 7), np.float32))
    expected = r"dilated_w has shape \(4, 2, 16, 7\), expected \(L, 2, 2R, R\) = \(4, 2, 16, 8\)"
    with pytest.raises(ValueError, match=expected):
        validate_exported(bad)
    bad = dict(weights, out2_b=np.zeros(255, np.float32))
    with pytest.raises(ValueError, match=r"out2_b has shape"):
        validate_exported(bad)
    bad = dict(weights, skip_b=weights["skip_b"].astype(np.float64))
    with pytest.raises(ValueError, match="skip_b has dtype float64"):
        validate_exported(bad)
    bad = dict(weights, res_w=np.asfortranarray(weights["res_w"]))
    with pytest.raises(ValueError, match="res_w is not C-contiguous"):
        validate_exported(bad)
    bad = {k: v for k, v in weights.items() if k != "out1_b"}
    with pytest.raises(ValueError, match="lack out1_b"):
        validate_exported(bad)
    with pytest.raises(ValueError, match=r"cond has shape \(10, 4, 15\)"):
        validate_exported(weights, np.zeros((10, 4, 15), np.float32))


# ---- training -------------------------------------------------------------------------------


def test_optimizer_steps_reduce_the_loss_on_a_sine_wave():
    torch.manual_seed(0)
    model = WaveNet(TINY)
    frames = 4
    t = np.arange(frames * TINY.hop_length)
    sine = 0.6 * np.sin(2 * np.pi * 300.0 * t / 16000)
    audio = torch.as_tensor(mu_law_encode(sine))[None]  # (1, T)
    mel = torch.full((1, frames, TINY.n_mels), 0.5)  # (1, T_frames, 80)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.loss(audio, mel)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 4.5  # close to ln(256): nothing learned yet
    assert losses[-1] < 0.75 * losses[0]


def test_vocode_returns_float32_audio_of_the_right_length():
    model = tiny_model()
    mel = np.random.default_rng(0).random((2, TINY.n_mels), dtype=np.float32)
    audio = model.vocode(mel, seed=5)
    assert audio.shape == (2 * TINY.hop_length,) and audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0
    np.testing.assert_array_equal(audio, model.vocode(mel, seed=5))
    # Every kernel draws the same samples from the same seed.
    np.testing.assert_array_equal(audio, model.vocode(mel, seed=5, backend="torch"))
    assert not np.array_equal(audio, model.vocode(mel, seed=6))


# ---- configs --------------------------------------------------------------------------------


def test_named_configs():
    default = WaveNetConfig()
    assert (default.n_layers, default.residual_channels, default.skip_channels,
            default.output_channels, default.max_dilation) == (12, 32, 128, 128, 32)
    assert default.dilations == (1, 2, 4, 8, 16, 32) * 2
    medium = WaveNetConfig.medium()
    assert (medium.n_layers, medium.residual_channels, medium.skip_channels,
            medium.output_channels, medium.max_dilation) == (20, 64, 256, 256, 512)
    assert medium.dilations == tuple(2 ** i for i in range(10)) * 2
    assert medium.receptive_field == 1 + 2 * 1023
    assert (medium.n_mels, medium.hop_length, medium.n_classes) == (80, 200, 256)


def test_config_round_trip_and_validation():
    for config in (WaveNetConfig(), WaveNetConfig.medium(), TINY):
        assert WaveNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown WaveNetConfig fields: typo"):
        WaveNetConfig.from_dict(dict(WaveNetConfig().to_dict(), typo=1))
    with pytest.raises(ValueError, match="power of 2"):
        WaveNetConfig(max_dilation=24)
    with pytest.raises(ValueError, match="hop_length 200"):
        WaveNetConfig(upsample_scales=(10, 10))


def test_state_dict_round_trip_rebuilds_the_same_model():
    model = tiny_model()
    rebuilt = WaveNet(WaveNetConfig.from_dict(model.config.to_dict()))
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    for name, arr in model.export_weights().items():
        np.testing.assert_array_equal(arr, rebuilt.export_weights()[name])
    assert isinstance(model.init_state(1), WaveNetState)


@pytest.mark.parametrize("cond_blocks", [0, 2])
def test_upsample_frames_matches_whole_utterance(cond_blocks):
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig(n_layers=2, residual_channels=8, skip_channels=8, output_channels=8,
                                  max_dilation=2, cond_channels=8, cond_blocks=cond_blocks)).eval()
    with torch.no_grad():
        for conv in model.upsample_convs:  # non-uniform smoothing, so edges really matter
            conv.weight.normal_()
        for _, second in model.cond_blocks:  # the frame-rate blocks widen the context too
            second.weight.normal_(0, 0.3)
        mel = torch.rand(1, 23, 80)
        whole = model.upsample(mel)
        pieces = [model.upsample_frames(mel, a, b) for a, b in [(0, 1), (1, 8), (8, 9), (9, 20), (20, 23)]]
        torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=1e-5, rtol=1e-5)
        # Too little context would show: a window without margin differs at its edges.
        assert not torch.allclose(model.upsample(mel[:, 8:9]), whole[:, 1600:1800], atol=1e-5)
        torch.testing.assert_close(model.project(whole), model.conditioning(mel))
        if cond_blocks:  # the blocks' two extra frames a side are in the margin, else edges differ
            assert model.upsample_context == 1 + 2 * cond_blocks + 2
            model.config = dataclasses.replace(model.config, cond_blocks=0)
            short = torch.cat([model.upsample_frames(mel, a, b) for a, b in [(0, 8), (8, 23)]], dim=1)
            assert not torch.allclose(short, whole, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 8, 9, 57, 400])
def test_streamed_chunks_tile_the_mel_and_grow_no_faster_than_the_audio_before_them(frames):
    """The WaveNet's chunks: the first short, each next at most twice the one before and at
    most CHUNK_FRAMES, so a vocoder at half real time keeps a stream fed."""
    from tts.vocoder.runtime import CHUNK_FRAMES, FIRST_CHUNK_FRAMES, chunk_bounds

    bounds = list(chunk_bounds(frames))
    assert bounds[0][0] == 0 and bounds[-1][1] == frames
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [stop - start for start, stop in bounds]
    assert sizes[0] == min(frames, FIRST_CHUNK_FRAMES) and max(sizes) <= CHUNK_FRAMES
    assert all(b <= 2 * a for a, b in zip(sizes, sizes[1:]))
