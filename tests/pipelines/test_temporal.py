"""The video frame loop: blends, scene cuts, Ruder's temporal loss in the optimisation."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from atelier.errors import OptionError
from atelier.pipelines.temporal import TemporalCoherence, TemporalGuide, TemporalOptions, blend_fresh, temporal_map

pytest.importorskip("cv2")


def textured(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def fake_style(frame: torch.Tensor) -> torch.Tensor:
    """A deterministic per-pixel "stylization" (so any change in a static video is the loop's doing)."""
    return (1 - frame).pow(2).flip(1)


def flickering_style(seed: itertools.count):
    """A stylization that adds fresh noise every frame: frame-by-frame flicker."""

    def stylize(frame: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(next(seed))
        return (fake_style(frame) + 0.1 * torch.randn(frame.shape, generator=generator)).clamp(0, 1)

    return stylize


def test_the_blend_leaves_a_static_video_stylization_unchanged():
    frame = textured(48, 64, seed=0)
    outputs = list(temporal_map([frame] * 6, blend_fresh(fake_style), TemporalOptions(strength=0.9)))
    for output in outputs:
        assert torch.allclose(output, fake_style(frame), atol=1e-5)


def test_the_blend_removes_flicker_along_the_motion():
    big = textured(80, 120, seed=1)
    frames = [big[..., 8:56, 2 * i : 2 * i + 64] for i in range(8)]  # panning 2 px/frame
    plain = list(temporal_map(frames, blend_fresh(flickering_style(itertools.count())), None))
    steady = list(temporal_map(frames, blend_fresh(flickering_style(itertools.count())), TemporalOptions()))
    # The first frame has no past: it is the fresh one.
    assert torch.equal(steady[0], plain[0])

    def jitter(outputs):  # change between consecutive outputs, compensating the known pan
        return sum(float((b[..., :, :-2] - a[..., :, 2:]).abs().mean()) for a, b in itertools.pairwise(outputs))

    assert jitter(steady) < 0.5 * jitter(plain)


def low_texture(height: int, width: int, seed: int) -> torch.Tensor:
    """Faint large blobs (+-10% around grey): DIS's coarsest level cannot lock onto a fast pan over it."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, 6, 6 * width // height, generator=generator)
    return (0.5 + 0.2 * (F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False) - 0.5))


def test_a_fast_flat_pan_where_the_flow_is_wrong_both_ways_is_stylized_fresh():
    from atelier.ops.flow import consistency_mask, estimate_flow

    big = low_texture(64, 480, seed=2)
    frames = [big[..., :, 50 + 40 * i : 146 + 40 * i] for i in range(2)]  # 40 px/frame
    backward, forward = estimate_flow(frames[1], frames[0]), estimate_flow(frames[0], frames[1])
    wrong = ((backward[:, :1] - 40).abs() > 3) | (backward[:, 1:].abs() > 3)
    passed = wrong & consistency_mask(backward, forward).bool()  # wrong, yet forward and backward agree
    assert float(passed.float().mean()) > 0.2

    def run(threshold):
        coherence = TemporalCoherence(TemporalOptions(strength=1.0, min_reliable=0.0,
                                                      photometric_threshold=threshold))
        outputs = list(temporal_map(frames, blend_fresh(fake_style), None, coherence=coherence))
        return outputs[1], coherence

    fresh = fake_style(frames[1])
    checked, _ = run(0.03)
    unchecked, _ = run(None)
    fresh_here = (checked - fresh).abs().amax(1, keepdim=True) < 1e-6
    # Ruder et al.'s masks alone carry the wrong pixels along (the tearing); brightness constancy
    # sends most of them back to the fresh stylization (right pixels: the static test above).
    assert float((unchecked - fresh).abs().amax(1, keepdim=True)[passed].gt(1e-3).float().mean()) > 0.9
    assert float(fresh_here[passed].float().mean()) > 0.6
    # The check only ever takes weight from the carried output: every pixel is at most as far from fresh.
    assert bool(((checked - fresh).abs() <= (unchecked - fresh).abs() + 1e-6).all())


def test_a_scene_cut_is_stylized_fresh_and_never_smeared():
    shot_a = [textured(48, 64, seed=2)] * 3
    shot_b = [textured(48, 64, seed=3) * 0.3 + 0.7 * torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1)] * 3
    coherence = TemporalCoherence(TemporalOptions(strength=1.0))
    outputs = list(temporal_map(shot_a + shot_b, blend_fresh(flickering_style(itertools.count())), None,
                                coherence=coherence))
    assert coherence.stats.cuts == 1
    fresh_b = flickering_style(itertools.count(3))(shot_b[0])
    assert torch.equal(outputs[3], fresh_b)  # the first frame of the new shot owes nothing to the old one


def test_unreliable_flow_everywhere_means_a_fresh_frame():
    options = TemporalOptions(min_reliable=0.5)
    coherence = TemporalCoherence(options, flow=lambda a, b, preset, max_side: torch.full((1, 2, *a.shape[-2:]), 40.0))
    frame = textured(32, 32, seed=4)
    coherence.push(frame, fake_style(frame))
    assert coherence.guide(frame) is None and coherence.stats.unreliable == 1


def test_options_are_checked():
    with pytest.raises(OptionError, match="strength"):
        TemporalOptions(strength=1.5)
    with pytest.raises(OptionError, match="long-term"):
        TemporalOptions(long_term=(2, 1))
    with pytest.raises(OptionError, match="flow preset"):
        TemporalOptions(flow_preset="slow")


def test_long_term_guides_keep_only_the_frames_they_need():
    big = textured(64, 100, seed=5)
    frames = [big[..., :, i : i + 64] for i in range(6)]
    coherence = TemporalCoherence(TemporalOptions(long_term=(1, 2, 4)))
    guides = []
    for frame in frames:
        guides.append(coherence.guide(frame))
        coherence.push(frame, fake_style(frame))
    assert len(coherence.inputs) == 4  # memory bounded by the longest offset
    assert guides[0] is None and guides[1].offsets == [1] and guides[2].offsets == [1, 2]
    assert guides[5].offsets == [1, 2, 4]
    total = sum(guides[5].masks[1:])  # long-term masks never double-count a pixel
    assert float(total.max()) <= 1


def test_gatys_with_a_guide_starts_from_the_warped_output_and_is_pulled_to_it(tiny_encoder):
    from atelier.api import stylize_tensor

    content = textured(32, 32, seed=6)
    style = textured(32, 32, seed=7)
    target = textured(32, 32, seed=8)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, :16] = 1  # only the left half can be carried from the previous frame
    guide = TemporalGuide([target], [mask], [1], TemporalOptions(loss_weight=1e4, iterations=5))

    def run(temporal):
        return stylize_tensor(content, [style], "gatys", method_kwargs={"encoder": tiny_encoder}, iterations=5,
                              progress=False, temporal=temporal)

    free, guided = run(None), run(guide)
    assert guided.info["sizes"] == [(32, 32)]  # one full-size level from the warped output
    left = lambda image: float((image - target)[..., :16].abs().mean())  # noqa: E731
    assert left(guided.image) < 0.5 * left(free.image)
    assert "temporal" in guided.info["parts"]


def test_a_feedforward_method_output_is_blended_where_the_flow_is_reliable():
    from atelier.api import stylize_tensor
    from atelier.methods.johnson import Johnson
    from atelier.nets.transformer import TransformerNet

    torch.manual_seed(0)
    method = Johnson(network=TransformerNet(width=4, blocks=1).eval())
    content = textured(32, 32, seed=9)
    fresh = stylize_tensor(content, [], method, progress=False).image
    warped = torch.full((1, 3, 32, 32), 0.5)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 16:, :] = 1
    guide = TemporalGuide([warped], [mask], [1], TemporalOptions(strength=1.0))
    out = stylize_tensor(content, [], method, progress=False, temporal=guide).image
    assert torch.allclose(out[..., 16:, :], warped[..., 16:, :])  # reliable: carried along the flow
    assert torch.allclose(out[..., :16, :], fresh[..., :16, :])  # occluded: the fresh output


def test_batched_frames_blend_exactly_as_one_at_a_time():
    from atelier.pipelines.temporal import temporal_map_batched

    big = textured(80, 120, seed=11)
    frames = [big[..., 8:56, 2 * i : 2 * i + 64] for i in range(7)]
    calls = []

    def stylize(batch):
        calls.append(batch.shape[0])
        return fake_style(batch)

    one = list(temporal_map(frames, blend_fresh(fake_style), TemporalOptions()))
    batched = list(temporal_map_batched(frames, stylize, TemporalOptions(), batch=3))
    assert calls == [3, 3, 1]
    assert len(batched) == len(one)
    for a, b in zip(one, batched):
        assert torch.allclose(a, b, atol=1e-6)
    calls.clear()
    resized = frames[:2] + [big[..., :40, :56]] * 2  # a change of size ends a batch early
    outputs = list(temporal_map_batched(resized, stylize, None, batch=3))
    assert calls == [2, 2] and all(torch.equal(o, fake_style(f)) for o, f in zip(outputs, resized))
    with pytest.raises(OptionError, match="per batch"):
        list(temporal_map_batched(frames, stylize, None, batch=0))


def test_frames_per_batch_follows_the_memory_budget(monkeypatch):
    from atelier.pipelines.memory import MAX_FRAME_BATCH, frames_per_batch

    monkeypatch.setenv("ATELIER_MEMORY_GB", "1")
    assert frames_per_batch(2**30 / 12) == 6  # half the budget over one frame
    assert frames_per_batch(2**30) == 1 and frames_per_batch(None) == 1
    assert frames_per_batch(1.0) == MAX_FRAME_BATCH


@pytest.mark.parametrize("name", ["johnson", "adain", "efdm"])
def test_a_network_stylizes_a_batch_of_frames_as_one_at_a_time(name, tiny_encoder, one_thread):
    from atelier.methods import get_method
    from atelier.nets.decoder import VGGDecoder
    from atelier.nets.transformer import TransformerNet

    torch.manual_seed(0)
    if name == "johnson":
        method = get_method(name)(network=TransformerNet(width=4, blocks=1).eval(), precision="fp32")
        styles, weights = [], [1.0]
    else:
        decoder = VGGDecoder("relu4_1", widths=tiny_encoder.widths).eval()
        method = get_method(name)(encoder=tiny_encoder, decoders={"relu4_1": decoder}, precision="fp32")
        styles, weights = [textured(40, 40, seed=12)], [1.0]
    frames = torch.cat([textured(32, 48, seed=s) for s in range(3)])
    assert method.frame_bytes(32, 48) > 0
    together = method.stylize(frames, styles, style_weights=weights, progress=False).image
    alone = torch.cat([method.stylize(frames[i : i + 1], styles, style_weights=weights, progress=False).image
                       for i in range(3)])
    assert together.shape == (3, 3, 32, 48)
    assert torch.allclose(together, alone, atol=1e-5)


def test_guided_optimisation_frames_run_a_fifth_of_the_iterations_by_default(tiny_encoder):
    from atelier.api import stylize_tensor

    content, style = textured(32, 32, seed=13), textured(32, 32, seed=14)
    guide = TemporalGuide([content], [torch.ones(1, 1, 32, 32)], [1], TemporalOptions())
    steps = []

    def run(temporal):
        result = stylize_tensor(content, [style], "gatys", method_kwargs={"encoder": tiny_encoder}, iterations=10,
                                scales=1, progress=False, temporal=temporal)
        steps.append(len(result.info["history"]))

    run(None)
    run(guide)
    assert steps == [10, 2]  # the fresh frame converges; the guided one starts from it, so fewer steps do
