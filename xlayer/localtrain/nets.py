"""CIFAR-style ResNets (He et al. 2016, section 4.2) as an ordered list of *units*.

A unit is the stem (conv3x3 -> BN -> ReLU) or one BasicBlock. Depth = 6n + 2 with n blocks per
stage, so ResNet-32 has n = 5 (16 units) and ResNet-110 has n = 18 (55 units). Any split of the
network into K local modules is a list of K contiguous unit ranges.

Unit names are ``(stage, block)``: the stem is ``(0, 0)``; stage s in {1, 2, 3} block b in
``0..n-1``. Published boundaries ("cut after unit (stage, block)") come from InfoPro
(Wang et al., ICLR 2021), see ``/work/shared/reference/local_learning.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from xlayer.errors import InputError

STAGE_WIDTHS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)

Boundary = tuple[int, int]

# (net name, K) -> boundaries; "cut after unit (stage, block)". K = 16 for ResNet-32 is every unit.
PUBLISHED_SPLITS: dict[tuple[str, int], list[Boundary]] = {
    ("resnet32", 2): [(2, 1)],
    ("resnet32", 4): [(1, 2), (2, 1), (3, 0)],
    ("resnet32", 8): [(1, 0), (1, 2), (1, 4), (2, 1), (2, 3), (3, 0), (3, 2)],
    ("resnet32", 16): [(0, 0)] + [(s, b) for s in (1, 2, 3) for b in range(5)][:-1],
    ("resnet110", 2): [(2, 8)],
    ("resnet110", 4): [(1, 11), (2, 7), (3, 3)],
    ("resnet110", 8): [(1, 4), (1, 11), (2, 0), (2, 7), (2, 14), (3, 3), (3, 10)],
    ("resnet110", 16): [(1, 1), (1, 4), (1, 7), (1, 10), (1, 13), (1, 16), (2, 1), (2, 4),
                        (2, 7), (2, 11), (2, 15), (3, 1), (3, 5), (3, 9), (3, 13)],
}
# InfoPro's memory-balanced ResNet-110 splits (more of the early, activation-heavy units per cut).
BALANCED_SPLITS: dict[tuple[str, int], list[Boundary]] = {
    ("resnet110", 2): [(1, 14)],
    ("resnet110", 4): [(1, 6), (1, 14), (2, 8)],
}
SPLIT_SCHEMES = ("published", "balanced", "even")


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, + shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Stem(nn.Module):
    """conv3x3 (in_channels -> 16) + BN + ReLU."""

    def __init__(self, in_channels: int, width: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


@dataclass(frozen=True)
class UnitInfo:
    """Name and output shape of one unit (channels, height = width)."""
    name: Boundary
    channels: int
    size: int
    is_block: bool


class Classifier(nn.Module):
    """Global average pool + fully connected layer (the network's own output layer)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


class ResNetCifar(nn.Module):
    """CIFAR ResNet of depth 6n+2 with ``units`` (stem + 3n blocks) and ``classifier``.

    ``normalize`` (fixed mean/std) is applied to the [0, 1] input before the first unit so the
    raw image stays available, e.g. as InfoPro's reconstruction target.
    """

    def __init__(self, depth: int = 32, in_channels: int = 3, image_size: int = 32,
                 num_classes: int = 10, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise InputError("net.depth", depth, "valid: 6n+2 with n >= 1, e.g. 20, 32, 56, 110")
        n = (depth - 2) // 6
        self.depth, self.n, self.in_channels = depth, n, in_channels
        self.image_size, self.num_classes = image_size, num_classes
        mean = mean or (0.5,) * in_channels
        std = std or (0.25,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        units: list[nn.Module] = [Stem(in_channels, STAGE_WIDTHS[0])]
        infos = [UnitInfo((0, 0), STAGE_WIDTHS[0], image_size, False)]
        c, size = STAGE_WIDTHS[0], image_size
        for s, (w, stride) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES), start=1):
            for b in range(n):
                st = stride if b == 0 else 1
                units.append(BasicBlock(c, w, st))
                size = math.ceil(size / st)  # 3x3 conv, pad 1: out = ceil(in / stride)
                c = w
                infos.append(UnitInfo((s, b), c, size, True))
        self.units = nn.ModuleList(units)
        self.unit_info = infos
        self.classifier = Classifier(c, num_classes)

    @property
    def unit_names(self) -> list[Boundary]:
        return [u.name for u in self.unit_info]

    @property
    def name(self) -> str:
        return f"resnet{self.depth}"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a [0, 1] image batch (no parameters, no saved tensors)."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.prepare(x)
        for u in self.units:
            h = u(h)
        return self.classifier(h)


def resnet(name: str, in_channels: int = 3, image_size: int | None = None,
           num_classes: int = 10, **kw) -> ResNetCifar:
    """``resnet(name)`` for names ``resnet{6n+2}`` (e.g. resnet32, resnet110, resnet8 for tests)."""
    if not name.startswith("resnet") or not name[6:].isdigit():
        raise InputError("net", name, "valid: resnet32, resnet110 (or any resnet{6n+2})")
    size = image_size or (28 if in_channels == 1 else 32)
    return ResNetCifar(int(name[6:]), in_channels, size, num_classes, **kw)


def split_by_boundaries(unit_names: list[Boundary], boundaries: list[Boundary]) -> list[list[int]]:
    """Unit indices of each module when cutting after each named unit (in order, no repeats)."""
    index = {name: i for i, name in enumerate(unit_names)}
    cuts = []
    for b in boundaries:
        b = tuple(b)
        if b not in index:
            raise InputError("split.boundary", b, f"valid: unit names (stage, block) in {unit_names[0]}..{unit_names[-1]}")
        cuts.append(index[b])
    if cuts != sorted(set(cuts)) or (cuts and cuts[-1] >= len(unit_names) - 1):
        raise InputError("split.boundaries", boundaries,
                         "valid: strictly increasing unit names, not the last unit")
    modules, start = [], 0
    for c in cuts + [len(unit_names) - 1]:
        modules.append(list(range(start, c + 1)))
        start = c + 1
    return modules


def even_split(n_units: int, K: int) -> list[list[int]]:
    """K contiguous modules of (nearly) equal unit count, larger ones first."""
    if not 1 <= K <= n_units:
        raise InputError("K", K, f"valid: 1..{n_units} (number of units) for an even split")
    q, r = divmod(n_units, K)
    out, start = [], 0
    for k in range(K):
        m = q + (1 if k < r else 0)
        out.append(list(range(start, start + m)))
        start += m
    return out


def make_split(net: ResNetCifar, K: int, scheme: str = "published") -> list[list[int]]:
    """Module -> unit indices for ``K`` modules.

    ``published``: InfoPro's table (K in {2, 4, 8, 16} for resnet32/resnet110); ``balanced``:
    InfoPro's memory-balanced ResNet-110 splits (K in {2, 4}); ``even``: equal unit counts.
    K = 1 (one module = backprop) is valid for every scheme.
    """
    if scheme not in SPLIT_SCHEMES:
        raise InputError("split", scheme, f"valid: {', '.join(SPLIT_SCHEMES)}")
    n_units = len(net.units)
    if K == 1:
        return [list(range(n_units))]
    if scheme == "even":
        return even_split(n_units, K)
    table = PUBLISHED_SPLITS if scheme == "published" else BALANCED_SPLITS
    valid = sorted(k for (name, k) in table if name == net.name)
    if (net.name, K) not in table:
        ok = ", ".join(str(k) for k in [1] + valid) if valid else "1 (no published splits for this net; use --split even)"
        raise InputError("K", K, f"valid for {net.name} {scheme} splits: {ok}")
    return split_by_boundaries(net.unit_names, table[(net.name, K)])
