"""Auxiliary heads: each maps a module's output h (B, C, S, S) to a local loss.

Every head is an ``nn.Module`` with ``loss(h, x_raw, y) -> scalar``. ``x_raw`` is the
un-normalised input image in [0, 1] (InfoPro's reconstruction target), ``y`` the labels.

* ``LinearHead``   greedy local learning: GAP + Linear, cross-entropy.
* ``MLPSRHead``    DGL (Belilovsky et al. 2020) "MLP-SR": pool to ceil(S/4), 3 x (1x1 conv + BN +
  ReLU), pool 2x2, flatten, 3 x (Linear(4C,4C) + BN + ReLU), Linear(4C, classes), cross-entropy.
* ``InfoProHead``  InfoPro (Wang et al. 2021): L = lam1 * BCE(decoder(h), x) + lam2 * L_y(head(h), y)
  with L_y softmax cross-entropy or supervised contrastive loss (temperature 0.07).
* ``FinalHead``    the network's own classifier (last module and backprop), cross-entropy.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from xlayer.errors import InputError

HEADS = ("linear", "mlp-sr", "infopro-softmax", "infopro-contrast")


class LinearHead(nn.Module):
    """Global average pool + one linear layer; L = CE(W * mean_hw(h) + b, y)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))

    def loss(self, h, x_raw, y):
        return F.cross_entropy(self(h), y)


class FinalHead(nn.Module):
    """Wraps the network's classifier so the last module uses it with plain cross-entropy."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, h):
        return self.classifier(h)

    def loss(self, h, x_raw, y):
        return F.cross_entropy(self(h), y)


class MLPSRHead(nn.Module):
    """DGL's MLP-SR auxiliary network (Belilovsky, Eickenberg, Oyallon; ICML 2020)."""

    def __init__(self, channels: int, size: int, num_classes: int):
        super().__init__()
        c = channels
        self.pool_size = math.ceil(size / 4)
        convs = []
        for _ in range(3):
            convs += [nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        self.convs = nn.Sequential(*convs)
        mlp = []
        for _ in range(3):
            mlp += [nn.Linear(4 * c, 4 * c, bias=False), nn.BatchNorm1d(4 * c), nn.ReLU()]
        self.mlp = nn.Sequential(*mlp, nn.Linear(4 * c, num_classes))

    def forward(self, h):
        h = self.convs(F.adaptive_avg_pool2d(h, self.pool_size))
        return self.mlp(F.adaptive_avg_pool2d(h, 2).flatten(1))

    def loss(self, h, x_raw, y):
        return F.cross_entropy(self(h), y)


def supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), one view per sample.

    z: L2-normalised features (B, d). For anchor i with positives P(i) = {j != i : y_j = y_i}:
    l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / T) / sum_{a != i} exp(z_i.z_a / T) ),
    averaged over anchors with |P(i)| > 0 (0 if there are none).
    """
    b = z.shape[0]
    sim = z @ z.t() / temperature
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return z.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    return -mean_log_prob_pos.mean()


class InfoProDecoder(nn.Module):
    """Bilinear upsample to the image size, conv3x3 (C->12) + BN + ReLU, conv3x3 (12->image
    channels), sigmoid; trained with BCE against the [0, 1] image."""

    def __init__(self, channels: int, image_size: int, image_channels: int):
        super().__init__()
        self.image_size = image_size
        self.net = nn.Sequential(nn.Conv2d(channels, 12, 3, 1, 1, bias=False), nn.BatchNorm2d(12),
                                 nn.ReLU(), nn.Conv2d(12, image_channels, 3, 1, 1))

    def forward(self, h):
        h = F.interpolate(h, size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=True)
        return torch.sigmoid(self.net(h))


class InfoProHead(nn.Module):
    """InfoPro local loss  L_k = lam1(k) * BCE(decoder(h), x) + lam2(k) * L_y(head(h), y).

    Head: conv3x3 (stride 2 and width 2C when C in {16, 32}, else C) + BN + ReLU, GAP,
    Linear(->128), ReLU, then Linear(128->classes) (``contrast=False``, softmax CE) or
    Linear(128->128) + L2 normalisation with supervised contrastive loss (``contrast=True``).
    The 2C width for the 16/32-channel conv follows InfoPro's reference code; the reference
    facts only fix the stride.
    """

    def __init__(self, channels: int, image_size: int, image_channels: int, num_classes: int,
                 lam1: float, lam2: float, contrast: bool = False, temperature: float = 0.07):
        super().__init__()
        self.lam1, self.lam2, self.contrast, self.temperature = lam1, lam2, contrast, temperature
        self.decoder = InfoProDecoder(channels, image_size, image_channels)
        c2, stride = (2 * channels, 2) if channels in (16, 32) else (channels, 1)
        self.conv = nn.Sequential(nn.Conv2d(channels, c2, 3, stride, 1, bias=False),
                                  nn.BatchNorm2d(c2), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(c2, 128), nn.ReLU(),
                                nn.Linear(128, 128 if contrast else num_classes))

    def forward(self, h):
        out = self.fc(F.adaptive_avg_pool2d(self.conv(h), 1).flatten(1))
        return F.normalize(out, dim=1) if self.contrast else out

    def loss(self, h, x_raw, y):
        total = h.new_zeros(())
        if self.lam1:
            total = total + self.lam1 * F.binary_cross_entropy(self.decoder(h), x_raw)
        if self.lam2:
            out = self(h)
            ly = supcon_loss(out, y, self.temperature) if self.contrast else F.cross_entropy(out, y)
            total = total + self.lam2 * ly
        return total


def lambda_schedule(k: int, K: int, first: float, last: float) -> float:
    """Linear interpolation over local modules k = 0..K-2: first at k = 0, last at k = K-2."""
    if K <= 2:
        return first
    return first + (last - first) * k / (K - 2)


def make_head(kind: str, channels: int, size: int, num_classes: int, image_size: int,
              image_channels: int, k: int = 0, K: int = 2,
              lam1: tuple[float, float] = (1.0, 0.0),
              lam2: tuple[float, float] = (0.5, 1.0)) -> nn.Module:
    """Auxiliary head of kind ``kind`` for module k (of K) whose output is (channels, size, size).

    InfoPro's lam1 (reconstruction) and lam2 (task) weights go linearly from the first to the
    second value over modules 0..K-2. The defaults (1 -> 0, 0.5 -> 1) are ours, not the paper's
    tuned values: more reconstruction early, more task loss late, as InfoPro prescribes.
    """
    if kind == "linear":
        return LinearHead(channels, num_classes)
    if kind == "mlp-sr":
        return MLPSRHead(channels, size, num_classes)
    if kind in ("infopro-softmax", "infopro-contrast"):
        return InfoProHead(channels, image_size, image_channels, num_classes,
                           lambda_schedule(k, K, *lam1), lambda_schedule(k, K, *lam2),
                           contrast=kind == "infopro-contrast")
    raise InputError("head", kind, f"valid: {', '.join(HEADS)}")
