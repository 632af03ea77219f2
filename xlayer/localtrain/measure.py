"""Peak memory and per-module times of a training step.

Memory, CPU (exact accounting, no allocator):
    peak_bytes = param_bytes + grad_bytes + optimizer_state_bytes + peak_saved_bytes
* param_bytes: every parameter of the learner (network + auxiliary heads) and BN buffers.
* grad_bytes: one gradient per trainable parameter (all are live after backward).
* optimizer_state_bytes: the optimizer's state tensors (SGD momentum buffers) after a step.
* peak_saved_bytes: maximum over the step of the bytes held by tensors autograd saved for
  backward, recorded with ``torch.autograd.graph.saved_tensors_hooks``. A saved tensor is
  counted from its pack until the graph node holding it is released (backward without
  retain_graph, or the graph going out of scope); tensors sharing a storage count once
  (views, in-place ReLU outputs), and storages of parameters/buffers are not counted again.
  Not counted: non-saved temporaries (e.g. an output that no backward formula needs), the
  gradient buffers flowing through backward, and allocator overhead; a GPU number from
  ``torch.cuda.max_memory_allocated`` includes those, so it is the ground truth there.

Memory, GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` around
one step that follows a warm-up step (so gradients and optimizer state exist).

Times: per module k, median wall-clock over ``repeats`` (after ``warmup``) of the forward of
its units, of its auxiliary head's forward + loss, of the backward of the head (loss to
module output) and of the units (module output to input and parameters), and of the backward
of its BackLink tail T_k alone; CUDA is synchronised around each timed region.
"""
from __future__ import annotations

import statistics
import time
import weakref
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from xlayer.errors import InputError
from xlayer.localtrain.methods import LocalLearner, _run, make_optimizer


@dataclass
class MemoryResult:
    """Peak memory of one training step, bytes. ``device`` 'cpu' (accounting) or 'cuda'."""
    method: str
    K: int
    p: int
    batch_size: int
    device: str
    param_bytes: int
    grad_bytes: int
    optimizer_state_bytes: int
    peak_saved_bytes: int
    peak_bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


class SavedTensorTracker:
    """Live bytes of tensors saved for backward, deduplicated by storage; tracks the peak."""

    def __init__(self, exclude: list[torch.Tensor] = ()):
        self.exclude = {self._key(t) for t in exclude}
        self.refs: dict[tuple, int] = {}
        self.live_bytes = 0
        self.peak_bytes = 0
        self.n_packed = 0

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        s = t.untyped_storage()
        return (t.device.type, s.data_ptr(), s.nbytes())

    def _release(self, key: tuple) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live_bytes -= key[2]

    def pack(self, t: torch.Tensor):
        self.n_packed += 1
        key = self._key(t)
        holder = _Holder(t)
        if key in self.exclude or key[2] == 0:
            return holder
        if key not in self.refs:
            self.refs[key] = 0
            self.live_bytes += key[2]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self.refs[key] += 1
        weakref.finalize(holder, self._release, key)
        return holder

    @staticmethod
    def unpack(holder: "_Holder") -> torch.Tensor:
        return holder.t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _Holder:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t):
        self.t = t


def _bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = SavedTensorTracker._key(t)
        if key not in seen:
            seen.add(key)
            total += key[2]
    return total


def account_step(step_fn, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> tuple[int, int, int, int]:
    """(param, grad, optimizer-state, peak-saved) bytes of ``step_fn()`` (forward+backward).

    Runs ``step_fn`` once under the saved-tensor hooks, then ``optimizer.step()`` so its
    state exists, and counts it.
    """
    params = [p for p in model.parameters()]
    buffers = list(model.buffers())
    tracker = SavedTensorTracker(exclude=params + buffers)
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    with tracker.hooks():
        step_fn()
    if optimizer is not None:
        optimizer.step()
    param_bytes = _bytes(params + buffers)
    grad_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    state = []
    if optimizer is not None:
        for st in optimizer.state.values():
            state += [v for v in st.values() if torch.is_tensor(v) and v.numel() > 1]
    return param_bytes, grad_bytes, _bytes(state), tracker.peak_bytes


def memory_of_step(learner: LocalLearner, x: torch.Tensor, y: torch.Tensor,
                   device: str | torch.device = "cpu") -> MemoryResult:
    """Peak memory of one ``learner.train_step`` on batch (x, y); see module docstring."""
    device = torch.device(device)
    learner.to(device).train()
    x, y = x.to(device), y.to(device)
    opt = make_optimizer(learner)
    cfg = learner.cfg
    if device.type == "cuda":
        learner.train_step(x, y)          # warm-up: gradients and momentum buffers exist
        opt.step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        learner.train_step(x, y)
        opt.step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        pb, gb, ob, _ = account_step(lambda: None, learner, None)
        ob = _bytes([v for st in opt.state.values() for v in st.values()
                     if torch.is_tensor(v) and v.numel() > 1])
        return MemoryResult(cfg.method, learner.K, learner.p, x.shape[0], "cuda", pb, gb, ob,
                            max(0, peak - pb - gb - ob), peak)
    pb, gb, ob, sb = account_step(lambda: learner.train_step(x, y), learner, opt)
    return MemoryResult(cfg.method, learner.K, learner.p, x.shape[0], "cpu", pb, gb, ob, sb,
                        pb + gb + ob + sb)


@dataclass
class ModuleTimes:
    """Median per-module times, seconds (index k = module k)."""
    fwd_s: list[float] = field(default_factory=list)       # units forward
    bwd_s: list[float] = field(default_factory=list)       # units backward (to input + params)
    aux_fwd_s: list[float] = field(default_factory=list)   # auxiliary head forward + loss
    aux_bwd_s: list[float] = field(default_factory=list)   # auxiliary head backward
    tail_bwd_s: list[float] = field(default_factory=list)  # BackLink tail T_k backward alone

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, warmup: int, repeats: int, stat: str = "median") -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times) if stat == "min" else statistics.median(times)


def module_times(learner: LocalLearner, x: torch.Tensor, y: torch.Tensor,
                 warmup: int = 1, repeats: int = 3, tail_p: int | None = None,
                 stat: str = "median") -> ModuleTimes:
    """Measure forward/backward times of each module, its head and its last ``tail_p`` units.

    Each module runs on the (detached) output of the previous one, so the inputs have the
    real shapes. Backward times are measured as (forward + backward) - forward.
    ``tail_p`` defaults to the learner's p. ``stat``: "median" or "min" over the repeats
    (min is the robust choice on a CPU shared with other jobs: interference only adds time).
    """
    if stat not in ("median", "min"):
        raise InputError("stat", stat, "valid: median, min")
    device = next(learner.parameters()).device
    x, y = x.to(device), y.to(device)
    learner.train()
    tail_p = learner.p if tail_p is None else tail_p
    out = ModuleTimes()
    h = learner.net.prepare(x).detach()
    for k, idx in enumerate(learner.module_units):
        units = [learner.net.units[i] for i in idx]
        head = learner.heads[k]
        h_in = h.detach().requires_grad_(k > 0)

        def fwd():
            with torch.no_grad():
                return _run(units, h_in)

        def fwd_bwd():
            o = _run(units, h_in)
            o.backward(torch.ones_like(o))

        t_f = _timed(fwd, device, warmup, repeats, stat)
        t_fb = _timed(fwd_bwd, device, warmup, repeats, stat)
        with torch.no_grad():
            h_out = _run(units, h_in)
        ho = h_out.detach().requires_grad_(True)

        def aux_f():
            with torch.no_grad():
                head.loss(ho, x, y)

        def aux_fb():
            head.loss(ho, x, y).backward()

        t_af = _timed(aux_f, device, warmup, repeats, stat)
        t_afb = _timed(aux_fb, device, warmup, repeats, stat)
        n_tail = min(tail_p, len(units)) if k < learner.K - 1 else 0
        if n_tail:
            with torch.no_grad():
                t_in = _run(units[:len(units) - n_tail], h_in).detach().requires_grad_(True)

            def tail_f():
                with torch.no_grad():
                    _run(units[len(units) - n_tail:], t_in)

            def tail_fb():
                o = _run(units[len(units) - n_tail:], t_in)
                o.backward(torch.ones_like(o))

            t_tail = max(0.0, _timed(tail_fb, device, warmup, repeats, stat) - _timed(tail_f, device, warmup, repeats, stat))
        else:
            t_tail = 0.0
        out.fwd_s.append(t_f)
        out.bwd_s.append(max(0.0, t_fb - t_f))
        out.aux_fwd_s.append(t_af)
        out.aux_bwd_s.append(max(0.0, t_afb - t_af))
        out.tail_bwd_s.append(t_tail)
        h = h_out.detach()
    learner.zero_grad(set_to_none=True)
    return out
