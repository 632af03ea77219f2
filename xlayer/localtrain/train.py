"""Training loop with per-epoch results and resume from the last finished epoch.

Protocol (InfoPro-style, scaled down): SGD Nesterov, momentum 0.9, weight decay 1e-4,
cosine learning-rate schedule over the epoch budget (linear warm-up for ``warmup_epochs``),
random crop (pad 4) + flip. After every epoch the model, optimizer, RNG state and the
results so far are written to ``<out>/checkpoint.pt``; ``resume=True`` continues from there.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from xlayer.localtrain.data import Dataset, batches, n_batches
from xlayer.localtrain.methods import LocalLearner, MethodConfig, make_optimizer
from xlayer.localtrain.nets import resnet


@dataclass
class TrainConfig:
    net: str = "resnet32"
    method: MethodConfig = field(default_factory=MethodConfig)
    epochs: int = 2
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 1e-4
    warmup_epochs: int = 0
    seed: int = 0
    augment: bool = True
    train_batches: int | None = None   # limit batches per epoch (a fraction of an epoch)
    test_batches: int | None = None
    threads: int | None = None


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    test_acc: float
    lr: float
    epoch_time_s: float


@dataclass
class RunResult:
    """All epochs of one (method, K, p, seed) run."""
    config: dict
    epochs: list[EpochResult]

    @property
    def final_test_acc(self) -> float:
        return self.epochs[-1].test_acc if self.epochs else float("nan")

    def as_dict(self) -> dict:
        return {"config": self.config, "final_test_acc": self.final_test_acc,
                "epochs": [asdict(e) for e in self.epochs]}


def lr_at(epoch: float, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine to 0 at cfg.epochs (epoch may be fractional)."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1e-9) / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


@torch.no_grad()
def evaluate(learner: LocalLearner, data: Dataset, batch_size: int, limit: int | None = None,
             device: torch.device = torch.device("cpu")) -> float:
    learner.eval()
    correct = total = 0
    for xb, yb in batches(data.x_test, data.y_test, batch_size, limit=limit):
        pred = learner(xb.to(device)).argmax(1).cpu()
        correct += int((pred == yb).sum())
        total += len(yb)
    learner.train()
    return correct / max(total, 1)


def build(cfg: TrainConfig, data: Dataset) -> LocalLearner:
    mean, std = data.mean_std
    net = resnet(cfg.net, data.channels, data.image_size, data.num_classes, mean=mean, std=std)
    return LocalLearner(net, cfg.method)


RESUME_IGNORED = ("threads",)   # settings that do not change the result


def run_fingerprint(cfg: TrainConfig, data: Dataset) -> dict:
    """What a checkpoint must have been trained with for ``resume`` to continue it: every
    training and method setting (but the thread count) and the data (name, sizes, a hash of
    the labels, so a different subset is a different run)."""
    import hashlib
    h = hashlib.sha256()
    for t in (data.y_train, data.y_test):
        h.update(t.detach().cpu().numpy().tobytes() if hasattr(t, "detach") else bytes(memoryview(t)))
    train_cfg = {k: v for k, v in asdict(cfg).items() if k != "method" and k not in RESUME_IGNORED}
    return json.loads(json.dumps({"train": train_cfg, "method": asdict(cfg.method), "dataset": data.name,
                                  "n_train": len(data.y_train), "n_test": len(data.y_test),
                                  "labels_sha256": h.hexdigest()}, default=str))


def _check_resumable(saved: dict | None, now: dict, ckpt: Path) -> None:
    """Refuse to continue a checkpoint made with another configuration (it would return or
    extend a result that is not this run's)."""
    from xlayer.errors import InputError
    if saved is None:
        raise InputError("resume", str(ckpt), "this checkpoint records no configuration (written by an older "
                                              "version); delete it or run without --resume")
    if saved == now:
        return
    diffs = []
    for part in ("train", "method"):
        a, b = saved.get(part) or {}, now.get(part) or {}
        diffs += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    diffs += [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in ("dataset", "n_train", "n_test", "labels_sha256")
              if saved.get(k) != now.get(k)]
    raise InputError("resume", str(ckpt), "the checkpoint was trained with another configuration ("
                     + "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
                     + "); use another --out or run without --resume")


def train(cfg: TrainConfig, data: Dataset, out: Path | None = None, resume: bool = False,
          device: str = "cpu", progress: Callable[[int, int, float], None] | None = None) -> RunResult:
    """Train and evaluate; ``progress(epoch, batch, loss)`` is called after every batch."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    learner = build(cfg, data).to(dev)
    opt = make_optimizer(learner, cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    config = {"train": {k: v for k, v in asdict(cfg).items() if k != "method"},
              "method": asdict(cfg.method), "dataset": data.name}
    result = RunResult(config, [])
    ckpt = out / "checkpoint.pt" if out else None
    fingerprint = run_fingerprint(cfg, data)
    if resume and ckpt and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        _check_resumable(state.get("fingerprint"), fingerprint, ckpt)
        learner.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result.epochs = [EpochResult(**e) for e in state["epochs"]]
    nb = n_batches(len(data.y_train), cfg.batch_size, drop_last=True, limit=cfg.train_batches)
    for epoch in range(len(result.epochs), cfg.epochs):
        t0 = time.perf_counter()
        loss_sum = seen = 0
        for i, (xb, yb) in enumerate(batches(data.x_train, data.y_train, cfg.batch_size, shuffle=True,
                                             train_aug=cfg.augment, generator=gen, drop_last=True,
                                             limit=cfg.train_batches)):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch + i / nb, cfg)
            xb, yb = xb.to(dev), yb.to(dev)
            opt.zero_grad(set_to_none=True)
            step = learner.train_step(xb, yb)
            opt.step()
            loss_sum += step.module_losses[-1] * len(yb)   # the network's own output loss
            seen += len(yb)
            if progress:
                progress(epoch, i, step.loss)
        train_time = time.perf_counter() - t0
        test_acc = evaluate(learner, data, max(cfg.batch_size, 256), cfg.test_batches, dev)
        result.epochs.append(EpochResult(epoch + 1, loss_sum / max(seen, 1), test_acc, lr_at(epoch + 1, cfg), train_time))
        if out:
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / "checkpoint.pt.tmp"
            torch.save({"model": learner.state_dict(), "optimizer": opt.state_dict(),
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "epochs": [asdict(e) for e in result.epochs], "fingerprint": fingerprint}, tmp)
            tmp.replace(ckpt)
            (out / "result.json").write_text(json.dumps(result.as_dict(), indent=2))
    return result
