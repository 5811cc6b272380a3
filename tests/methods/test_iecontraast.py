"""IEContraAST (Chen et al. 2021) on tiny random networks: batch construction, the contrastive
losses, the collection discriminator, training with resume, export and stylization (fast tier)."""

from __future__ import annotations

import pytest
import torch

from atelier.encoders import random_vgg19
from atelier.errors import OptionError
from atelier.losses import grouped_info_nce
from atelier.methods import get_method
from atelier.methods.iecontraast import IEContraASTTrainingOptions, ProjectionHead, paired_batch
from atelier.nets.gan import MultiScaleDiscriminator
from atelier.train import TrainConfig, train
from atelier.train.task import get_task
from helpers import smooth_image, stripes_image

#: Small enough for the fast tier: one narrow discriminator scale, no SANet start.
TINY = {"discriminator_scales": 1, "disc_width": 4, "projection_dim": 8, "start_from": []}


@pytest.fixture(scope="module")
def encoder():
    return random_vgg19(seed=0)


def test_each_output_shares_its_style_with_one_other_and_its_content_with_one_other():
    contents, styles = paired_batch(4, torch.device("cpu"))
    assert contents.tolist() == [0, 1, 2, 3, 1, 2, 3, 0] and styles.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    pairs = set(zip(contents.tolist(), styles.tolist()))
    assert len(pairs) == 8  # no output repeats another
    for k in range(8):
        same_style = [j for j in range(8) if j != k and styles[j] == styles[k]]
        same_content = [j for j in range(8) if j != k and contents[j] == contents[k]]
        assert len(same_style) == 1 and len(same_content) == 1 and same_style != same_content


def _grouped_embeddings(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings of a paired batch of 3: mostly a code of the style, a little of the content."""
    generator = torch.Generator().manual_seed(seed)
    contents, styles = paired_batch(3, torch.device("cpu"))
    style_code, content_code = torch.randn(3, 16, generator=generator), torch.randn(3, 16, generator=generator)
    embeddings = style_code[styles] + 0.3 * content_code[contents]
    return torch.nn.functional.normalize(embeddings, dim=1), styles, contents


@pytest.mark.parametrize("kind", ["style", "content"])
def test_each_contrastive_loss_is_lower_for_correct_groups_than_for_shuffled_ones(kind):
    generator = torch.Generator().manual_seed(1)
    contents, styles = paired_batch(3, torch.device("cpu"))
    groups, others = (styles, contents) if kind == "style" else (contents, styles)
    codes = torch.randn(3, 16, generator=generator)
    embeddings = torch.nn.functional.normalize(codes[groups] + 0.3 * torch.randn(6, 16, generator=generator), dim=1)
    correct = grouped_info_nce(embeddings, groups, others, 0.2)
    for trial in range(5):
        order = torch.randperm(6, generator=generator)
        shuffled = grouped_info_nce(embeddings[order], groups, others, 0.2)
        if not torch.equal(groups[order], groups):
            assert correct < shuffled, (trial, float(correct), float(shuffled))
    # the loss counts one positive per anchor against the outputs that share neither attribute
    assert float(grouped_info_nce(torch.ones(6, 4) / 2, groups, others, 0.2)) == pytest.approx(6 * torch.log(
        torch.tensor(4.0)).item(), rel=1e-5)


def test_contrastive_loss_gradients_pull_positives_together():
    embeddings, styles, contents = _grouped_embeddings()
    embeddings = embeddings.double().requires_grad_(True)
    torch.autograd.gradcheck(lambda e: grouped_info_nce(e, styles, contents, 0.2), (embeddings,))
    loss = grouped_info_nce(embeddings, styles, contents, 0.2)
    loss.backward()
    with torch.no_grad():
        moved = torch.nn.functional.normalize(embeddings - 0.05 * embeddings.grad, dim=1)
        before = (embeddings[0] @ embeddings[3]).item()  # outputs 0 and 3 share style 0
        assert (moved[0] @ moved[3]).item() > before
        assert grouped_info_nce(moved, styles, contents, 0.2) < loss
    with pytest.raises(OptionError):
        grouped_info_nce(embeddings, styles, contents, 0.0)


def test_projection_heads_and_discriminator_shapes():
    head = ProjectionHead(16, out=8, scale=10.0)
    embedding = head(torch.rand(5, 16, 6, 7))
    assert embedding.shape == (5, 8) and torch.allclose(embedding.norm(dim=1), torch.ones(5), atol=1e-5)
    scores = MultiScaleDiscriminator(scales=3, width=4)(torch.rand(2, 3, 128, 128))
    assert [tuple(s.shape) for s in scores] == [(2, 1, 14, 14), (2, 1, 6, 6), (2, 1, 2, 2)]
    assert len(MultiScaleDiscriminator(scales=3, width=4)(torch.rand(1, 3, 40, 40))) == 1  # 20 px is too small


def test_options_are_the_papers_and_bad_values_are_refused():
    options = IEContraASTTrainingOptions()
    assert (options.style_weight, options.adversarial_weight, options.style_contrastive_weight,
            options.content_contrastive_weight, options.contrastive_temperature) == (1.0, 5.0, 0.3, 0.3, 0.2)
    with pytest.raises(OptionError, match="contrastive_temperature"):
        IEContraASTTrainingOptions(contrastive_temperature=0)
    with pytest.raises(OptionError):
        IEContraASTTrainingOptions(adversarial_weight=-1)


def test_a_batch_of_one_is_refused_with_the_fix(encoder):
    task = get_task("iecontraast")(IEContraASTTrainingOptions(**TINY), encoder=encoder)
    model = task.build_model()
    with pytest.raises(OptionError, match="batch_size >= 2"):
        task.losses(model, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_three_steps_with_resume_export_and_stylize(folders, tmp_path, encoder):
    content, style = folders
    cfg = TrainConfig(task="iecontraast", content=str(content), style=str(style), output=str(tmp_path / "run"),
                      steps=2, batch_size=2, crop_size=32, checkpoint_every=1, sample_every=0, eval_content="",
                      options=TINY)
    first = train(cfg, encoder=encoder, progress=False)
    assert {"style_contrastive", "content_contrastive", "adversarial", "discriminator"} <= set(first.history[-1])
    resumed = train(cfg.replace(steps=3), encoder=encoder, progress=False)  # continues at step 2
    straight = train(cfg.replace(steps=3, output=str(tmp_path / "straight")), encoder=encoder, progress=False)
    assert resumed.step == 3 and [h["loss"] for h in resumed.history] == pytest.approx(
        [h["loss"] for h in straight.history], rel=1e-5)
    files = {p.stem: str(p) for p in resumed.exported}
    assert set(files) == {"iecontraast_transform", "iecontraast_decoder"}  # heads and discriminator stay behind
    method = get_method("iecontraast")(encoder=encoder, precision="fp32", transform=files["iecontraast_transform"],
                                       decoder=files["iecontraast_decoder"])
    image, painting = smooth_image(48, 64), stripes_image(48, 48)
    out = method.stylize(image, [painting], style_weights=[1.0], progress=False).image
    assert out.shape == image.shape and torch.isfinite(out).all()


def test_runtime_controls_alpha_several_styles_and_masks(encoder):
    from atelier.nets.decoder import VGGDecoder
    from atelier.nets.sanet import SANetTransform

    transform = SANetTransform(encoder.channels("relu4_1"))
    for module in (transform.sanet4_1.out, transform.sanet5_1.out):
        torch.nn.init.normal_(module.weight, std=0.1)

    torch.manual_seed(0)
    decoder = VGGDecoder("relu4_1", widths=encoder.widths)
    with torch.no_grad():  # keep the random decoder's output inside (0, 1), not clamped flat
        last = decoder.stages.to_rgb[1]
        last.weight.mul_(0.5 / last.weight.abs().sum((1, 2, 3), keepdim=True))
        last.bias.fill_(0.5)

    def method(**options):
        return get_method("iecontraast")(encoder=encoder, precision="fp32", networks={"transform": transform},
                                         decoders={"relu4_1": decoder}, **options)

    image, a, b = smooth_image(48, 64), stripes_image(48, 48, period=4), stripes_image(48, 48, period=9)
    masks = torch.zeros(1, 2, 48, 64)
    masks[:, 0, :, :32], masks[:, 1, :, 32:] = 1, 1
    mixed = method(alpha=0.5).stylize(image, [a, b], style_weights=[0.5, 0.5], masks=masks, progress=False).image
    assert mixed.shape == image.shape and torch.isfinite(mixed).all()
    # alpha 0 is the content attending to itself: the style no longer matters
    first = method(alpha=0.0).stylize(image, [a], style_weights=[1.0], progress=False).image
    second = method(alpha=0.0).stylize(image, [b], style_weights=[1.0], progress=False).image
    full = method().stylize(image, [b], style_weights=[1.0], progress=False).image
    unchanged, styled = float((first - second).abs().max()), float((full - second).abs().max())
    assert unchanged < 1e-7 and styled > 1e-5, (unchanged, styled)  # the tamed random decoder is nearly flat


@pytest.mark.real_weights
def test_shipped_weights_stylize_a_small_image(vgg):
    from atelier.io import load_image, resize_longest
    from conftest import EXAMPLES

    content = resize_longest(load_image(EXAMPLES / "garden.jpg"), 96)
    style = resize_longest(load_image(EXAMPLES / "van_gogh_wheat_field_with_cypresses.jpg"), 96)
    ours = get_method("iecontraast")(encoder=vgg).stylize(content, [style], style_weights=[1.0], progress=False)
    sanet = get_method("sanet")(encoder=vgg).stylize(content, [style], style_weights=[1.0], progress=False)
    assert ours.image.shape == content.shape and torch.isfinite(ours.image).all()
    # its own trained weights (not SANet's under another name), still a stylization of the content
    assert float((ours.image - sanet.image).abs().mean()) > 1e-3
    assert float((ours.image - content).abs().mean()) > 1e-2
