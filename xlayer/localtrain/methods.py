"""One training step for backprop, greedy local learning, DGL, InfoPro and BackLink.

Notation: the network is split into K modules M_1..M_K (contiguous unit ranges, see
``nets.make_split``); module k ends in an auxiliary head a_k with local loss L_k (the last
module uses the network's own classifier with cross-entropy). ``sg`` is stop-gradient (detach).

* backprop:  L = CE(f(x), y); every parameter gets dL/dtheta through the whole network.
* local (greedy / DGL / InfoPro):  h_k = M_k(sg(h_{k-1})), loss L_k = a_k(h_k); each module's
  parameters get only dL_k. Greedy: linear head; DGL: MLP-SR head; InfoPro: decoder + head.
* BackLink (Guo et al., arXiv 2205.07141), propagation length p (whole units, i.e. residual
  blocks): each module k < K is split into a head H_k and a tail T_k = its last p units.
      a_k = H_k(x_k),   h_k = T_k(sg(a_k)),   L_k = a_k-head(h_k),   x_{k+1} = h_k  (no sg)
  with dL_k flowing into H_k through T_k by chaining explicitly. Hence
      grad T_k = dL_k/dT_k + dL_{k+1}/dT_k,     grad H_k = dL_k/dH_k   (no dL_{k+1}),
  and no error travels further back than one module plus p units. p = 0 is local learning;
  K = 1 is backprop.

The step is *sequential and memory-faithful*: module k runs forward then backward at once
and its graph is freed, except BackLink's tail T_k whose graph is kept until module k+1 has
run its backward ("keep the graph" implementation: no recomputation). All losses have
weight 1; the caller runs one optimizer step per batch (one SGD over all parameters equals
DGL's per-module optimizers, because SGD is per-parameter).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from xlayer.errors import InputError, closest
from xlayer.localtrain.heads import HEADS, FinalHead, make_head
from xlayer.localtrain.nets import ResNetCifar, make_split

# method -> default auxiliary head (None: backprop has no auxiliary heads)
METHODS: dict[str, str | None] = {
    "backprop": None,
    "greedy": "linear",
    "dgl": "mlp-sr",
    "infopro": "infopro-softmax",
    "infopro-contrast": "infopro-contrast",
    "backlink": "linear",
}


@dataclass(frozen=True)
class MethodConfig:
    """Which method, how many modules, BackLink's propagation length and the local head.

    ``head`` overrides the method's default auxiliary head (BackLink runs on top of any of
    ``heads.HEADS``); ``p`` is only meaningful for ``backlink``.
    """
    method: str = "greedy"
    K: int = 4
    p: int = 0
    head: str | None = None
    split: str = "published"
    lam1: tuple[float, float] = (1.0, 0.0)
    lam2: tuple[float, float] = (0.5, 1.0)

    def resolved_head(self) -> str | None:
        return self.head if self.head is not None else METHODS.get(self.method)


@dataclass
class StepResult:
    """Losses of one training step (gradients are left in ``.grad``)."""
    loss: float                      # sum of module losses (backprop: the single loss)
    module_losses: list[float] = field(default_factory=list)


def check_method(name: str) -> str:
    if name not in METHODS:
        hint = closest(name, METHODS)
        raise InputError("method", name, f"valid: {', '.join(METHODS)}"
                         + (f" (did you mean {hint[0]}?)" if hint else ""))
    return name


def _run(units: list[nn.Module], h: torch.Tensor) -> torch.Tensor:
    for u in units:
        h = u(h)
    return h


class LocalLearner(nn.Module):
    """A network plus its split, auxiliary heads and the method's training step."""

    def __init__(self, net: ResNetCifar, cfg: MethodConfig):
        super().__init__()
        check_method(cfg.method)
        head_kind = cfg.resolved_head()
        if head_kind is not None and head_kind not in HEADS:
            raise InputError("head", head_kind, f"valid: {', '.join(HEADS)}")
        if cfg.p < 0:
            raise InputError("p", cfg.p, "valid: p >= 0 (residual blocks)")
        if cfg.p and cfg.method != "backlink":
            raise InputError("p", cfg.p, "valid: 0 unless method is backlink")
        self.net, self.cfg = net, cfg
        K = 1 if cfg.method == "backprop" else cfg.K
        self.module_units: list[list[int]] = make_split(net, K, cfg.split)
        self.K = len(self.module_units)
        if self.K > 1:
            p_max = min(len(m) for m in self.module_units[:-1])
            if cfg.p > p_max:
                raise InputError("p", cfg.p, f"valid: 0..{p_max} (units in the smallest of "
                                 f"modules 1..{self.K - 1} for K={self.K})")
        heads: list[nn.Module] = []
        for k, units in enumerate(self.module_units[:-1]):
            info = net.unit_info[units[-1]]
            heads.append(make_head(head_kind, info.channels, info.size, net.num_classes,
                                   net.image_size, net.in_channels, k, self.K, cfg.lam1, cfg.lam2))
        heads.append(FinalHead(net.classifier))
        self.heads = nn.ModuleList(heads)

    @property
    def p(self) -> int:
        return self.cfg.p if self.cfg.method == "backlink" else 0

    def module_parts(self, k: int) -> tuple[list[nn.Module], list[nn.Module]]:
        """(H_k, T_k) as unit lists; T_k is empty for the last module or p = 0."""
        idx = self.module_units[k]
        n_tail = 0 if k == self.K - 1 else self.p
        units = [self.net.units[i] for i in idx]
        return units[:len(units) - n_tail], units[len(units) - n_tail:]

    def forward(self, x_raw: torch.Tensor) -> torch.Tensor:
        """Inference: the whole network (its own classifier), independent of the method."""
        return self.net(x_raw)

    def train_step(self, x_raw: torch.Tensor, y: torch.Tensor) -> StepResult:
        """Forward and backward of one batch; accumulates gradients, no optimizer step."""
        x = self.net.prepare(x_raw)
        losses: list[float] = []
        link: torch.Tensor | None = None   # BackLink: previous tail's output, graph kept
        inp = x
        for k in range(self.K):
            head_units, tail_units = self.module_parts(k)
            x_k = link if link is not None else inp.detach()
            a = _run(head_units, x_k)
            if tail_units:
                a_det = a.detach().requires_grad_(True)       # the stop-gradient sits here
                out = _run(tail_units, a_det)
                loss = self.heads[k].loss(out, x_raw, y)
                loss.backward(retain_graph=True)              # dL_k into aux head and T_k; keep T_k
                if a.requires_grad:                           # dL_k into H_k (and T_{k-1})
                    a.backward(a_det.grad)
                link = out                                    # dL_{k+1} will reach T_k only
            else:
                out = a
                loss = self.heads[k].loss(out, x_raw, y)
                loss.backward()                               # frees this module (and T_{k-1})
                link = None
                inp = out
            losses.append(loss.item())
            del loss, a, out, x_k
        return StepResult(sum(losses), losses)


def make_optimizer(model: nn.Module, lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 1e-4, nesterov: bool = True) -> torch.optim.SGD:
    """SGD with Nesterov momentum (the InfoPro protocol) over all parameters incl. heads."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                           weight_decay=weight_decay, nesterov=nesterov and momentum > 0)
