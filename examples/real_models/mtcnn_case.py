"""MTCNN's proposal network (PyPI ``facenet-pytorch`` 2.6.0): the first stage of the MTCNN face
detector, with the trained weights the wheel ships (``facenet_pytorch/data/pnet.pt``, 28 KB;
converted by the publisher from the original MTCNN).

``import facenet_pytorch`` needs torchvision (its NMS) and PIL, which these cases do not use,
so :class:`PNet` states the package's ``facenet_pytorch.models.mtcnn.PNet`` line for line (a
fully convolutional net: three 3x3 convolutions with PReLU, a 2x2 ceil-mode max-pool, a face
probability map and a box regression map) and loads the shipped state dict; ground_truth.py
checks it against the package's own class. MTCNN runs it on an image pyramid, so the height and
width vary; its input is ``(image - 127.5) / 128`` and it keeps positions whose face
probability exceeds 0.6 (facenet-pytorch's default first threshold).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from _packages import package_file
from torch import nn

from harness import ExpectedFailure, Metric, ModelCase, register, tol
from harness.strategies import images

THRESHOLD = 0.6  # facenet_pytorch.MTCNN(thresholds=[0.6, 0.7, 0.7])[0]


class PNet(nn.Module):
    """facenet_pytorch.models.mtcnn.PNet without its file loading."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        a = self.softmax4_1(self.conv4_1(x))
        b = self.conv4_2(x)
        return b, a


def weights_file():
    return package_file("facenet_pytorch", "facenet-pytorch", "data/pnet.pt")


@cache
def _weights() -> dict[str, torch.Tensor]:
    return torch.load(weights_file(), map_location="cpu")


def build() -> nn.Module:
    model = PNet()
    model.load_state_dict(_weights())
    return model.eval()


def face_image(height: int, width: int, *, faces: int = 2, seed: int = 0) -> np.ndarray:
    """A synthetic photo, (height, width, 3) uint8-valued floats: a textured background with
    skin-toned oval faces, dark eyes and brows, a nose shadow and a mouth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.empty((height, width, 3))
    img[..., 0] = 90 + 40 * np.sin(xx / 17.0) + 20 * np.cos(yy / 11.0)
    img[..., 1] = 110 + 30 * np.cos(xx / 23.0 + yy / 31.0)
    img[..., 2] = 140 + 25 * np.sin(yy / 13.0)
    size = min(height, width) * 0.38
    for k in range(faces):
        cy = height * (0.35 + 0.3 * k) + rng.uniform(-3, 3)
        cx = width * (0.3 + 0.4 * k) + rng.uniform(-3, 3)
        s = size * (1.0 - 0.25 * k)
        face = ((yy - cy) / (0.62 * s)) ** 2 + ((xx - cx) / (0.48 * s)) ** 2 < 1
        img[face] = (205, 160, 135)
        shade = np.exp(-(((yy - cy) / (0.5 * s)) ** 2 + ((xx - cx) / (0.4 * s)) ** 2))
        img -= (face * (1 - shade) * 40)[..., None]
        for dx in (-0.18, 0.18):
            eye = ((yy - (cy - 0.12 * s)) / (0.05 * s)) ** 2 + ((xx - (cx + dx * s)) / (0.09 * s)) ** 2 < 1
            brow = (np.abs(yy - (cy - 0.22 * s)) < 0.025 * s) & (np.abs(xx - (cx + dx * s)) < 0.12 * s)
            img[eye] = (40, 30, 30)
            img[brow] = (70, 45, 35)
        nose = (np.abs(xx - cx) < 0.04 * s) & (yy > cy - 0.05 * s) & (yy < cy + 0.12 * s)
        img[nose] -= 35
        mouth = ((yy - (cy + 0.25 * s)) / (0.04 * s)) ** 2 + ((xx - cx) / (0.16 * s)) ** 2 < 1
        img[mouth] = (150, 60, 60)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255)


def pyramid_level(image: np.ndarray, scale: float) -> torch.Tensor:
    """MTCNN's input at one pyramid scale: resized (area), normalised, (1, 3, h, w)."""
    t = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    h, w = int(image.shape[0] * scale + 1), int(image.shape[1] * scale + 1)  # facenet-pytorch's rounding
    t = nn.functional.interpolate(t, size=(h, w), mode="area")
    return ((t - 127.5) * 0.0078125).contiguous()


@cache
def _photo() -> np.ndarray:
    return face_image(120, 160)


# facenet-pytorch's pyramid for a 120x160 photo, min_face_size 20: scale 12/20, then x0.709
def _level(k: int) -> list[tuple[torch.Tensor, ...]]:
    return [(pyramid_level(_photo(), 0.6 * 0.709**k),)]


def _face_decisions(expected, actual) -> float:
    """Share of positions whose face / no-face decision at MTCNN's 0.6 differs from eager's."""
    e, a = np.asarray(expected["face_prob"]), np.asarray(actual["face_prob"])
    if e.shape != a.shape or not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.mean((e[..., 1, :, :] > THRESHOLD) != (a[..., 1, :, :] > THRESHOLD)))


CASE = register(
    ModelCase(
        name="mtcnn_pnet",
        build=build,
        depends_on=("facenet-pytorch",),
        example_inputs=lambda: _level(0)[0],
        input_names=("image",),
        output_names=("box_offsets", "face_prob"),
        inputs={
            "photo_scale_0": lambda: _level(0),
            "photo_scale_2": lambda: _level(2),
            "photo_scale_4": lambda: _level(4),
        },
        # float32 reordering noise only: probabilities in [0, 1], offsets of order 1
        tolerance={"default": tol(1e-4, 1e-4)},
        metric=Metric("face decisions flipped at 0.6", "fraction", _face_decisions, threshold=0.0),
        approximate_metric=Metric(
            "face decisions flipped at 0.6", "fraction", _face_decisions, threshold=0.01
        ),
        dynamic_dims={"image": {2: (12, 200), 3: (12, 200)}},
        # generated values at the example's size (the sizes are dynamic-shapes' job)
        strategy=lambda: images(height=73, width=97, batch=(1, 1), low=-1.0, high=1.0).map(
            lambda x: [(torch.from_numpy(x),)]
        ),
        expected=tuple(
            ExpectedFailure(
                target,
                "dynamic-shapes",
                "torch.export refuses H, W in 12-200: the ceil-mode 2x2 max-pool's size guard "
                "2*((h-3)//2) < h-2 holds for odd sizes only (its suggested fix: h = 2*_h - 1); "
                "measured: the fixed 73x97 file rejects the 37x49 and 19x25 pyramid levels",
            )
            for target in (
                "torch-export",
                "aoti",
                "executorch-xnnpack",
                "executorch-portable",
                "executorch-xnnpack-int8",
            )
        )
        + (
            ExpectedFailure(
                "executorch-xnnpack-int8",
                "hypothesis",
                "PT2E static int8 calibrated on the one photo its fixed 73x97 capture takes: on noise-like "
                "images it flips more than 1% of face decisions (measured with the ExecuTorch runtime "
                "directly: up to 1.2%, 4 of 40 random images over 1%; the photo itself 0)",
            ),
        ),
        tags=frozenset({"vision", "face-detection", "stateless", "publisher-weights"}),
    )
)
