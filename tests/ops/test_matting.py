"""Matting Laplacian (Levin et al. 2008, eq. 12) and the photorealism energy (Luan et al. 2017, eq. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atelier.errors import OptionError
from atelier.ops.matting import laplacian_to_torch, matting_energy, matting_laplacian
from helpers import smooth_image


def brute_force_laplacian(image: np.ndarray, eps: float = 1e-7, radius: int = 1) -> np.ndarray:
    """Eq. 12 written out: one window at a time, one entry at a time."""
    height, width, _ = image.shape
    n = height * width
    side = 2 * radius + 1
    area = side * side
    pixels = image.reshape(n, 3)
    matrix = np.zeros((n, n))
    for y in range(radius, height - radius):
        for x in range(radius, width - radius):
            window = [(y + dy) * width + (x + dx) for dy in range(-radius, radius + 1)
                      for dx in range(-radius, radius + 1)]
            colors = pixels[window]
            mu = colors.mean(axis=0)
            sigma = (colors - mu).T @ (colors - mu) / area
            inverse = np.linalg.inv(sigma + eps / area * np.eye(3))
            for a, i in enumerate(window):
                for b, j in enumerate(window):
                    matrix[i, j] += (a == b) - (1 + (colors[a] - mu) @ inverse @ (colors[b] - mu)) / area
    return matrix


@pytest.mark.parametrize(("shape", "radius", "eps"), [((5, 6), 1, 1e-7), ((3, 4), 1, 1e-2), ((6, 7), 2, 1e-5)])
def test_laplacian_equals_brute_force(shape, radius, eps):
    image = np.random.default_rng(0).random((*shape, 3))
    laplacian = matting_laplacian(image, eps=eps, radius=radius)
    expected = brute_force_laplacian(image, eps=eps, radius=radius)
    assert laplacian.shape == expected.shape
    np.testing.assert_allclose(laplacian.toarray(), expected, rtol=1e-10, atol=1e-10)


def test_laplacian_from_tensor_equals_from_array():
    image = smooth_image(9, 11)
    from_tensor = matting_laplacian(image)
    from_array = matting_laplacian(image[0].permute(1, 2, 0).double().numpy())
    assert abs(from_tensor - from_array).max() == 0


def test_laplacian_symmetric_zero_row_sums_and_positive_semidefinite():
    image = smooth_image(12, 10).double()[0].permute(1, 2, 0).numpy()
    laplacian = matting_laplacian(image)
    assert abs(laplacian - laplacian.T).max() < 1e-12
    np.testing.assert_allclose(np.asarray(laplacian.sum(axis=1)).ravel(), 0, atol=1e-10)
    assert np.linalg.eigvalsh(laplacian.toarray()).min() > -1e-8
    assert laplacian.has_sorted_indices and laplacian.nnz == (5 * 12 - 6) * (5 * 10 - 6)


def test_energy_vanishes_for_constant_and_locally_affine_images():
    content = smooth_image(24, 32, seed=1).double()
    laplacian = matting_laplacian(content)
    random = matting_energy(torch.rand(1, 3, 24, 32, dtype=torch.float64), laplacian)
    constant = matting_energy(torch.full((1, 3, 24, 32), 0.3, dtype=torch.float64), laplacian)
    # V_c = a_c . I + d_c: every channel an affine function of the content's colour.
    coefficients = torch.tensor([[0.5, -0.2, 0.3], [0.1, 0.8, -0.4], [-0.3, 0.2, 0.9]], dtype=torch.float64)
    affine = torch.einsum("cj,bjhw->bchw", coefficients, content) + torch.tensor([0.1, -0.2, 0.05]).view(1, 3, 1, 1)
    assert abs(constant.item()) < 1e-12 * random.item()
    assert matting_energy(affine, laplacian).item() < 1e-5 * random.item()
    assert matting_energy(content, laplacian).item() < 1e-5 * random.item()


def test_energy_is_quadratic_form_with_gradient_2mv_in_float32():
    content = smooth_image(8, 9)
    laplacian = matting_laplacian(content)
    image = torch.rand(2, 3, 8, 9, requires_grad=True)
    energy = matting_energy(image, laplacian)
    columns = image.detach().double().reshape(6, 72).numpy().T
    product = laplacian @ columns
    assert energy.dtype == torch.float32
    assert energy.item() == pytest.approx(float((columns * product).sum()), rel=1e-5)
    energy.backward()
    expected = torch.from_numpy(2 * product.T).reshape(2, 3, 8, 9).float()
    assert torch.allclose(image.grad, expected, atol=1e-5)


def test_gradcheck_float64_scipy_and_torch_sparse():
    content = smooth_image(5, 6)
    laplacian = matting_laplacian(content)
    image = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: matting_energy(x, laplacian), (image,))
    sparse = laplacian_to_torch(laplacian, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: matting_energy(x, sparse), (image,))


def test_torch_sparse_laplacian_matches_scipy():
    content = smooth_image(10, 12)
    laplacian = matting_laplacian(content)
    image = torch.rand(1, 3, 10, 12)
    expected = matting_energy(image, laplacian)
    assert torch.allclose(matting_energy(image, laplacian_to_torch(laplacian)), expected, rtol=1e-4)


def test_errors():
    with pytest.raises(OptionError, match=r"\(H, W, 3\)"):
        matting_laplacian(np.zeros((4, 4)))
    with pytest.raises(OptionError, match=r"\(1, 3, H, W\)"):
        matting_laplacian(torch.zeros(2, 3, 4, 4))
    with pytest.raises(OptionError, match="smaller than one"):
        matting_laplacian(np.zeros((2, 5, 3)))
    with pytest.raises(OptionError, match="float"):
        matting_laplacian(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(OptionError, match="eps"):
        matting_laplacian(np.zeros((4, 4, 3)), eps=0)
    laplacian = matting_laplacian(np.zeros((4, 5, 3)))
    with pytest.raises(OptionError, match=r"\(20, 20\).*25 pixels"):
        matting_energy(torch.zeros(1, 3, 5, 5), laplacian)
