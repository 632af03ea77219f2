"""What eager PyTorch modules keep for the backward pass, counted on real modules (CPU).

    python benchmarks/eager_memory.py          # table: measured vs xlayer's layer / logits / step-peak bytes,
                                               # and a layer under torchtitan's selective checkpointing

A Llama-style decoder layer written as the Hugging Face modules are (transformers
``modeling_llama.py``: ``LlamaRMSNorm`` upcasts to fp32, ``LlamaMLP`` is
``down(act(gate(x)) * up(x))``, RoPE by ``rotate_half``, ``F.scaled_dot_product_attention``),
a GPT-style layer of torch.nn modules (``nn.LayerNorm``, biased ``nn.Linear``, SDPA,
``nn.GELU(approximate="tanh")``, as the H200 kernel file's layer) and the written-out tanh
GELU of Hugging Face's ``gelu_new`` run forward in bf16 on the CPU. Two counters:

* ``saved_bytes``: every tensor autograd saves for backward during the layer's forward
  (``torch.autograd.graph.saved_tensors_hooks``), one count per storage, parameters and
  model-level inputs (the RoPE cos/sin tables, computed once per model) left out;
* ``peak_bytes``: the largest sum of live tensor storages over a forward + backward
  (a ``TorchDispatchMode`` sees every op's outputs, ``weakref.finalize`` their release).

On the CPU, PyTorch's SDPA runs its flash kernel (``_scaled_dot_product_flash_attention_for_cpu``)
which, like the CUDA one, saves q, k, v, the output and the log-sum-exp; CUDA-only fused
kernels (``torch.nn.RMSNorm``'s ``_fused_rms_norm`` since torch 2.9) are not what these
modules call. Nothing here is fitted: the numbers check the formulas of
``xlayer.cost.memory`` with the ``pytorch-eager`` profile's ``saved_activations``.
"""
from __future__ import annotations

import math
import sys
import weakref
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class HFRMSNorm(nn.Module):
    """transformers' LlamaRMSNorm.forward, op for op."""

    def __init__(self, h: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(h))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


class NewGELU(nn.Module):
    """transformers' NewGELUActivation (``gelu_new``, GPT-2)."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(seq: int, head_dim: int, dtype=torch.bfloat16):
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    emb = torch.cat([torch.outer(torch.arange(seq).float(), inv)] * 2, dim=-1)
    return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]


class LlamaLayer(nn.Module):
    """A Llama decoder layer as transformers writes it (no bias, RMSNorm, RoPE, SwiGLU)."""

    def __init__(self, h: int, heads: int, kv_heads: int, ffn: int):
        super().__init__()
        self.a, self.kv, self.d = heads, kv_heads, h // heads
        self.input_layernorm, self.post_attention_layernorm = HFRMSNorm(h), HFRMSNorm(h)
        self.q_proj = nn.Linear(h, heads * self.d, bias=False)
        self.k_proj = nn.Linear(h, kv_heads * self.d, bias=False)
        self.v_proj = nn.Linear(h, kv_heads * self.d, bias=False)
        self.o_proj = nn.Linear(heads * self.d, h, bias=False)
        self.gate_proj = nn.Linear(h, ffn, bias=False)
        self.up_proj = nn.Linear(h, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, h, bias=False)

    def forward(self, x, cos, sin, past=None):
        """Over a prompt (causal), or decoding onto ``past`` = (keys, values) — transformers'
        ``DynamicCache.update``, a ``torch.cat`` of each — returning (output, (keys, values))."""
        b, s, _ = x.shape
        residual, y = x, self.input_layernorm(x)
        q = self.q_proj(y).view(b, s, self.a, self.d).transpose(1, 2)
        k = self.k_proj(y).view(b, s, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(y).view(b, s, self.kv, self.d).transpose(1, 2)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=past is None, enable_gqa=self.kv != self.a)
        x = residual + self.o_proj(o.transpose(1, 2).reshape(b, s, -1))
        residual, y = x, self.post_attention_layernorm(x)
        out = residual + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))
        return out if past is None else (out, (k, v))


class GPTLayer(nn.Module):
    """A pre-LN GPT layer of torch.nn modules (biases on, no dropout)."""

    def __init__(self, h: int, heads: int, ffn: int, act: nn.Module | None = None):
        super().__init__()
        self.a, self.d = heads, h // heads
        self.ln_1, self.ln_2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.c_attn, self.c_proj = nn.Linear(h, 3 * h), nn.Linear(h, h)
        self.c_fc, self.mlp_proj = nn.Linear(h, ffn), nn.Linear(ffn, h)
        self.act = act if act is not None else nn.GELU(approximate="tanh")

    def forward(self, x, cos=None, sin=None, past=None):
        """Over a prompt (causal), or decoding onto ``past`` = (keys, values) by ``torch.cat``,
        returning (output, (keys, values))."""
        b, s, h = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(h, dim=2)
        q, k, v = (t.view(b, s, self.a, self.d).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        x = x + self.c_proj(o.transpose(1, 2).reshape(b, s, h))
        out = x + self.mlp_proj(self.act(self.c_fc(self.ln_2(x))))
        return out if past is None else (out, (k, v))


def saved_bytes(layer: nn.Module, x: torch.Tensor, *model_inputs: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves during ``layer(x, *model_inputs)``'s forward
    (parameters and the model-level inputs left out; ``x`` counted if the layer saves it)."""
    skip = {t.untyped_storage().data_ptr() for t in [*layer.parameters(), *model_inputs]}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen.setdefault(st.data_ptr(), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x, *model_inputs)
    del out
    return sum(seen.values())


class LiveBytes(TorchDispatchMode):
    """Sum of live storages created by ops under the mode, and its peak (storages of ``skip``
    — parameters, inputs made before the mode — never counted, also when an op returns a view
    of them)."""

    def __init__(self, skip: tuple[torch.Tensor, ...] = ()):
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in skip}
        self.live: dict[int, int] = {}
        self.now = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        self.now -= self.live.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                ptr = st.data_ptr()
                if ptr and ptr not in self.live and ptr not in self.skip:
                    self.live[ptr] = st.nbytes()
                    self.now += st.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(st, self._release, ptr)
        return out


def loss_peak_bytes(tokens: int, hidden: int, vocab: int) -> int:
    """Peak live bytes of ``logits = lm_head(x)``; ``F.cross_entropy(logits.float(), y)``;
    backward — the caller keeps ``logits`` (as a training loop that returns them does); the
    head's weight and x are not counted (the peak comes before their gradients exist)."""
    torch.manual_seed(0)
    head = nn.Linear(hidden, vocab, bias=False).to(torch.bfloat16)
    x = torch.randn(tokens, hidden, dtype=torch.bfloat16, requires_grad=True)
    y = torch.randint(0, vocab, (tokens,))
    with LiveBytes(skip=(head.weight, x)) as live:
        logits = head(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
    del logits
    return live.peak


_NOT_ELEMENTWISE = {"mm", "addmm", "bmm", "ones_like", "_scaled_dot_product_flash_attention_for_cpu",
                    "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention",
                    "_scaled_dot_product_flash_attention_backward"}
_VIEWS = {"view", "_unsafe_view", "transpose", "t", "expand", "slice", "select", "unsqueeze", "squeeze", "permute",
          "alias", "detach", "split", "split_with_sizes", "as_strided", "reshape", "unbind", "chunk", "narrow"}


class KernelTrace(TorchDispatchMode):
    """Every aten op under the mode with the bytes its tensor operands occupy (each storage
    once per op; a stride-0 expanded operand counts its storage, a slice its own elements) and
    the bytes it writes: its outputs, or for an in-place op (``add_``, ``_foreach_mul_``) its
    first operand."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, int, int]] = []

    @staticmethod
    def _bytes(t: torch.Tensor) -> int:
        return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in _VIEWS:
            ins = {t.untyped_storage().data_ptr(): t for t in tree_flatten((args, kwargs))[0]
                   if isinstance(t, torch.Tensor)}
            if name.endswith("_"):  # in place: writes its first operand (a tensor or a list of them)
                outs = [t for t in tree_flatten(args[0])[0] if isinstance(t, torch.Tensor)]
            else:
                outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            self.ops.append((name, sum(map(self._bytes, ins.values())),
                             sum(t.numel() * t.element_size() for t in outs)))
        return out


def elementwise_traffic(h: int = 384, heads: int = 6, kv_heads: int = 2, ffn: int = 864, seq: int = 96,
                        batch: int = 1) -> dict[str, float]:
    """Element-wise kernels (everything but GEMMs, attention and views) of one Llama layer's
    forward and backward as the Hugging Face modules run them: kernel counts and bytes moved."""
    torch.manual_seed(0)
    layer = LlamaLayer(h, heads, kv_heads, ffn).to(torch.bfloat16)
    x = torch.randn(batch, seq, h, dtype=torch.bfloat16, requires_grad=True)
    cos, sin = rope_tables(seq, h // heads)
    with KernelTrace() as tr:
        y = layer(x, cos, sin)
        n_fwd = len(tr.ops)
        y.backward(torch.ones_like(y))
    res = {}
    for part, ops in (("fwd", tr.ops[:n_fwd]), ("bwd", tr.ops[n_fwd:])):
        ew = [o for o in ops if o[0] not in _NOT_ELEMENTWISE]
        res[f"{part}_all_kernels"] = len([o for o in ops if o[0] != "ones_like"])  # GEMMs and attention too
        res[f"{part}_kernels"] = len(ew)
        res[f"{part}_bytes"] = float(sum(r + w for _, r, w in ew))
    return res


def gelu_new_traffic(tokens: int = 96, ffn: int = 1024) -> dict[str, float]:
    """Kernels and bytes of Hugging Face's NewGELUActivation forward and backward on a
    tokens × ffn bf16 tensor (the FC1 output), traced."""
    torch.manual_seed(0)
    x = torch.randn(tokens, ffn, dtype=torch.bfloat16, requires_grad=True)
    with KernelTrace() as tr:
        y = NewGELU()(x)
        n_fwd = len(tr.ops)
        y.backward(torch.ones_like(y))
    fwd, bwd = tr.ops[:n_fwd], [o for o in tr.ops[n_fwd:] if o[0] != "ones_like"]
    return {"fwd_kernels": len(fwd), "fwd_bytes": float(sum(r + w for _, r, w in fwd)),
            "bwd_kernels": len(bwd), "bwd_bytes": float(sum(r + w for _, r, w in bwd))}


def cross_entropy_traffic(tokens: int = 64, hidden: int = 128, vocab: int = 4096) -> dict[str, float]:
    """The element-wise kernels of ``F.cross_entropy(logits.float(), y)`` over 16-bit logits and
    its backward (the output layer's GEMMs and ``ones_like`` left out), traced with
    :class:`KernelTrace`: kernels and bytes per logit, forward and backward. ``nll_loss`` and its
    backward take the log-probabilities only for their shape and gather or scatter one value per
    token, so their storage is not counted as read (the backward writes its dense gradient)."""
    torch.manual_seed(0)
    head = nn.Linear(hidden, vocab, bias=False).to(torch.bfloat16)
    x = torch.randn(tokens, hidden, dtype=torch.bfloat16, requires_grad=True)
    y = torch.randint(0, vocab, (tokens,))
    with KernelTrace() as tr:
        logits = head(x)
        loss = F.cross_entropy(logits.float(), y)
        n_fwd = len(tr.ops)
        loss.backward()
    n = tokens * vocab
    out = {}
    for part, ops in (("fwd", tr.ops[:n_fwd]), ("bwd", tr.ops[n_fwd:])):
        ew = [(name, r, w) for name, r, w in ops if name not in ("mm", "ones_like")]
        moved = sum((0 if name.startswith("nll_loss") else r) + w for name, r, w in ew)
        out[f"{part}_kernels"] = len(ew)
        out[f"{part}_bytes_per_logit"] = moved / n
    return out


def adamw_step_bytes_per_param(foreach: bool = True, dtype=torch.float32) -> float:
    """Bytes per parameter that one ``torch.optim.AdamW`` step moves (after the step that
    creates its state), traced kernel by kernel on the CPU (``foreach=True`` is PyTorch's
    default on CUDA: 8 multi-tensor kernels over the parameters)."""
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(1000, 100, dtype=dtype)) for _ in range(3)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-3, foreach=foreach)
    opt.step()
    with KernelTrace() as tr:
        opt.step()
    return sum(r + w for _, r, w in tr.ops) / sum(p.numel() for p in params)


def predicted_traffic(h: int = 384, heads: int = 6, kv_heads: int = 2, ffn: int = 864, seq: int = 96,
                      batch: int = 1) -> dict[str, float]:
    """The element-wise kernels of xlayer's layer_work under the pytorch-eager profile."""
    from xlayer.workload.model import ModelSpec
    from xlayer.workload.training_ops import layer_work

    m = ModelSpec(name="llama-like", layers=1, hidden=h, heads=heads, kv_heads=kv_heads, ffn_hidden=ffn,
                  vocab=1000, seq_len=seq, activation="swiglu", norm="rmsnorm", position="rope", bias=False)
    w = layer_work(m, batch, 1, False, 1, "bf16", "flash", 0.0, eager_modules=True)
    res = {}
    for part, ops in (("fwd", w.fwd), ("bwd", w.bwd)):
        ew = [o for o in ops if o.kind == "elementwise"]
        res[f"{part}_all_kernels"] = len(ops)
        res[f"{part}_kernels"] = len(ew)
        res[f"{part}_bytes"] = float(sum(o.bytes for o in ew))
    return res


def measure(h: int = 256, heads: int = 8, kv_heads: int = 8, ffn: int = 688, seq: int = 128, batch: int = 2,
            vocab: int = 4096) -> dict[str, int]:
    """Measured bytes for one configuration (small enough for a CPU test)."""
    torch.manual_seed(0)
    x = torch.randn(batch, seq, h, dtype=torch.bfloat16, requires_grad=True)
    cos, sin = rope_tables(seq, h // heads)
    llama = LlamaLayer(h, heads, kv_heads, ffn).to(torch.bfloat16)
    gpt = GPTLayer(h, heads, 4 * h).to(torch.bfloat16)
    gpt_new = GPTLayer(h, heads, 4 * h, NewGELU()).to(torch.bfloat16)
    return {
        "llama_layer_saved_bytes": saved_bytes(llama, x, cos, sin),
        "gpt_layer_saved_bytes": saved_bytes(gpt, x),
        "gpt_gelu_new_layer_saved_bytes": saved_bytes(gpt_new, x),
        "loss_peak_bytes": loss_peak_bytes(batch * seq, h, vocab),
    }


def predicted(h: int = 256, heads: int = 8, kv_heads: int = 8, ffn: int = 688, seq: int = 128, batch: int = 2,
              vocab: int = 4096, profile: str | None = "pytorch-eager") -> dict[str, float]:
    """xlayer's bytes for the same configuration under a stack profile (None: fused kernels)."""
    from xlayer.cost.memory import layer_activation_bytes, logits_activation_bytes
    from xlayer.mapping.profiles import SavedActivations, get_profile
    from xlayer.workload.model import ModelSpec

    saved = get_profile(profile).saved_activations if profile else None
    llama = ModelSpec(name="llama-like", layers=1, hidden=h, heads=heads, kv_heads=kv_heads, ffn_hidden=ffn,
                      vocab=vocab, seq_len=seq, activation="swiglu", norm="rmsnorm", position="rope", bias=False)
    gpt = ModelSpec(name="gpt-like", layers=1, hidden=h, heads=heads, kv_heads=heads, ffn_hidden=4 * h,
                    vocab=vocab, seq_len=seq, activation="gelu", norm="layernorm", position="learned", bias=True)

    def layer(m, s):
        return float(layer_activation_bytes(m, batch, 1, 1, False, "none", "flash", 0.0, saved=s))

    # Hugging Face's gelu_new (GPT-2): the written-out tanh GELU keeps 8 B per FC1-output element
    gelu_new = SavedActivations(**{**(saved or SavedActivations()).model_dump(), "gelu_input_bytes": 8.0}) \
        if saved is not None else None
    return {
        "llama_layer_saved_bytes": layer(llama, saved),
        "gpt_layer_saved_bytes": layer(gpt, saved),
        "gpt_gelu_new_layer_saved_bytes": layer(gpt, gelu_new),
        "loss_peak_bytes": float(logits_activation_bytes(llama, batch, 1, 1, saved)),
    }


def llama_decode_kernels(h: int = 256, heads: int = 4, kv_heads: int = 2, ffn: int = 688, cached: int = 16) -> int:
    """Kernels one Llama layer (transformers' modules) launches to decode a token over a KV cache;
    the RoPE tables come from the model, once per forward (transformers' ``LlamaModel.forward``
    builds ``position_embeddings`` for all layers)."""
    torch.manual_seed(0)
    layer = LlamaLayer(h, heads, kv_heads, ffn).to(torch.bfloat16)
    x = torch.randn(1, 1, h, dtype=torch.bfloat16)
    cos, sin = (t[:, :, -1:] for t in rope_tables(cached + 1, h // heads))
    past = tuple(torch.randn(1, kv_heads, cached, h // heads, dtype=torch.bfloat16) for _ in range(2))
    with torch.no_grad(), KernelTrace() as tr:
        layer(x, cos, sin, past=past)
    return len(tr.ops)


def gpt_decode_kernels(gelu_new: bool = False, h: int = 256, heads: int = 4, cached: int = 16) -> int:
    """Kernels one GPT layer launches to decode a token over a KV cache (aten ops under
    :class:`KernelTrace`, views left out): one-op GELU (``nn.GELU``, plain PyTorch) or
    ``gelu_new`` (Hugging Face)."""
    torch.manual_seed(0)
    layer = GPTLayer(h, heads, 4 * h, NewGELU() if gelu_new else None).to(torch.bfloat16)
    x = torch.randn(1, 1, h, dtype=torch.bfloat16)
    past = tuple(torch.randn(1, heads, cached, h // heads, dtype=torch.bfloat16) for _ in range(2))
    with torch.no_grad(), KernelTrace() as tr:
        layer(x, past=past)
    return len(tr.ops)


class _AllOps(TorchDispatchMode):
    """Counts every aten op under the mode, views included."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def expert_bias_loop_ops(local_experts: int, tokens_per_expert: int = 3, h: int = 8) -> tuple[int, int]:
    """(forward, backward) aten ops, views included, of the fc2-bias step of Megatron-Core's
    TEGroupedMLP with biased experts (``_apply_bias``, megatron/core/transformer/moe/experts.py
    @d7288711): the expert output and the fp32 routing probabilities split by the tokens per
    local expert, ``t + b * p`` for each expert (bias and probabilities both trainable), the
    parts concatenated, viewed back and cast to the output dtype; backward driven by a ready-made
    output gradient."""
    counts = [tokens_per_expert] * local_experts
    out = torch.randn(sum(counts), h, dtype=torch.bfloat16, requires_grad=True)
    biases = [torch.randn(h, dtype=torch.bfloat16, requires_grad=True) for _ in counts]
    probs = torch.rand(sum(counts), 1, requires_grad=True)
    fwd = _AllOps()
    with fwd:
        shape = out.shape
        pieces = zip(torch.split(out.view(-1, shape[-1]), counts), biases, torch.split(probs, counts))
        y = torch.cat([t + b * p for t, b, p in pieces]).view(shape).to(out.dtype)
    grad = torch.ones_like(y)
    bwd = _AllOps()
    with bwd:
        y.backward(grad)
    return fwd.n, bwd.n


def autograd_ops_per_layer(kind: str = "plain", h: int = 256, heads: int = 4, seq: int = 64) -> tuple[int, int]:
    """(forward, backward) aten ops, views included, of one training layer under autograd:
    ``plain`` the torch.nn GPT layer (one-op GELU), ``gelu_new`` the same with Hugging Face's
    NewGELU, ``gated`` the Llama layer of transformers' modules. The backward is driven by a
    ready-made output gradient, so no loss op is counted."""
    torch.manual_seed(0)
    if kind == "gated":
        layer, extra = LlamaLayer(h, heads, heads, 688), tuple(rope_tables(seq, h // heads))
    else:
        layer, extra = GPTLayer(h, heads, 4 * h, NewGELU() if kind == "gelu_new" else None), ()
    layer = layer.to(torch.bfloat16)
    x = torch.randn(2, seq, h, dtype=torch.bfloat16, requires_grad=True)
    fwd = _AllOps()
    with fwd:
        y = layer(x, *extra)
    grad = torch.ones_like(y)
    bwd = _AllOps()
    with bwd:
        y.backward(grad)
    return fwd.n, bwd.n


def op_sac_held_bytes(h: int = 256, heads: int = 8, kv_heads: int = 2, ffn: int = 688, seq: int = 128,
                      batch: int = 2) -> tuple[int, int]:
    """(bytes a Llama layer keeps after its forward under torchtitan's per-op selective
    checkpointing — its input included, which the checkpoint keeps —, bytes it keeps without
    checkpointing).
    The policy is torchtitan's (torchtitan/distributed/activation_checkpoint.py @b5bcd76c:
    MUST_SAVE the compute-intensive ops of ``get_default_op_list()`` and SDPA, except every
    second ``aten.mm``/``aten.linear`` counted per call), run by ``torch.utils.checkpoint``
    (non-reentrant) with ``create_selective_checkpoint_contexts``; on the CPU SDPA's flash
    kernel is ``_scaled_dot_product_flash_attention_for_cpu``, which stands in for the CUDA one
    in the save set. Live storages are counted by :class:`LiveBytes` (the output left out)."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    layer = LlamaLayer(h, heads, kv_heads, ffn).to(torch.bfloat16)
    cos, sin = rope_tables(seq, h // heads)
    x = torch.randn(batch, seq, h, dtype=torch.bfloat16, requires_grad=True)
    out = []
    for sac in (True, False):
        lb = LiveBytes(skip=(*layer.parameters(), x, cos, sin))
        with lb:
            y = checkpoint(layer, x, cos, sin, use_reentrant=False, context_fn=_op_sac_context) if sac \
                else layer(x, cos, sin)
        # the checkpoint keeps its input; without it autograd keeps only the fp32 copy the
        # RMSNorm makes of it (counted among the live storages)
        out.append(lb.now - y.untyped_storage().nbytes() + (x.untyped_storage().nbytes() if sac else 0))
        del y
    return out[0], out[1]


def op_sac_backward_matmuls(h: int = 256, heads: int = 8, kv_heads: int = 2, ffn: int = 688, seq: int = 64,
                            batch: int = 1) -> tuple[int, int]:
    """(``aten.mm`` calls in a Llama layer's backward under torchtitan's per-op selective
    checkpointing, without checkpointing): the difference is the matmuls the policy re-runs."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    layer = LlamaLayer(h, heads, kv_heads, ffn).to(torch.bfloat16)
    cos, sin = rope_tables(seq, h // heads)
    counts = []
    for sac in (True, False):
        x = torch.randn(batch, seq, h, dtype=torch.bfloat16, requires_grad=True)
        y = checkpoint(layer, x, cos, sin, use_reentrant=False, context_fn=_op_sac_context) if sac else layer(x, cos, sin)
        tr = KernelTrace()
        with tr:
            y.backward(torch.ones_like(y))
        counts.append(sum(1 for op in tr.ops if op[0] == "mm"))
    return counts[0], counts[1]


def _op_sac_context():
    """torchtitan's per-op policy (see :func:`op_sac_held_bytes`) as a checkpoint context."""
    from torch._functorch.partitioners import get_default_op_list
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    aten = torch.ops.aten
    save = {op.default for op in get_default_op_list().compute_intensive_ops}
    save |= {aten._scaled_dot_product_flash_attention_for_cpu.default, aten.linear.default}
    mm_ops = (aten.mm.default, aten.linear.default)
    count = {"forward": 0, "recompute": 0}

    def policy(ctx, func, *args, **kwargs):
        mode = "recompute" if ctx.is_recompute else "forward"
        if func in mm_ops:
            count[mode] += 1
        if func in save and not (func in mm_ops and count[mode] % 2 == 0):
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE
    return create_selective_checkpoint_contexts(policy)


class StaticCacheLlamaLayer(nn.Module):
    """A Llama decoder layer as gpt-fast's ``model.py`` (pytorch-labs) writes it, run eagerly:
    RMSNorm computed in fp32 and cast back (``x.float()``, mean of squares, rsqrt, ``type_as``,
    weight), one fused QKV projection split in three, RoPE on (even, odd) pairs in fp32 stacked
    back, a preallocated KV cache written in place at the token's position and expanded to the
    query heads by ``repeat_interleave`` (a copy even for one group), SDPA over the whole cache
    with a boolean mask row, SwiGLU with separate gate and up projections."""

    def __init__(self, h: int, heads: int, kv_heads: int, ffn: int, max_seq: int):
        super().__init__()
        self.a, self.kv, self.d, self.h = heads, kv_heads, h // heads, h
        self.wqkv = nn.Linear(h, (heads + 2 * kv_heads) * self.d, bias=False)
        self.wo = nn.Linear(h, h, bias=False)
        self.w1, self.w3 = nn.Linear(h, ffn, bias=False), nn.Linear(h, ffn, bias=False)
        self.w2 = nn.Linear(ffn, h, bias=False)
        self.g_attn, self.g_ffn = nn.Parameter(torch.ones(h)), nn.Parameter(torch.ones(h))
        self.register_buffer("k_cache", torch.zeros(1, kv_heads, max_seq, self.d))
        self.register_buffer("v_cache", torch.zeros(1, kv_heads, max_seq, self.d))

    @staticmethod
    def _norm(x, g):
        xf = x.float()
        return (xf * torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + 1e-5)).type_as(x) * g

    @staticmethod
    def _rope(x, f):
        p = x.float().reshape(*x.shape[:-1], -1, 2)
        f = f.view(1, p.size(1), 1, p.size(3), 2)
        out = torch.stack([p[..., 0] * f[..., 0] - p[..., 1] * f[..., 1],
                           p[..., 1] * f[..., 0] + p[..., 0] * f[..., 1]], -1)
        return out.flatten(3).type_as(x)

    def forward(self, x, pos, freqs, mask):
        b, s, _ = x.shape
        kvd = self.kv * self.d
        q, k, v = self.wqkv(self._norm(x, self.g_attn)).split([self.h, kvd, kvd], dim=-1)
        q = self._rope(q.view(b, s, self.a, self.d), freqs).transpose(1, 2)
        k = self._rope(k.view(b, s, self.kv, self.d), freqs).transpose(1, 2)
        self.k_cache[:, :, pos] = k
        self.v_cache[:, :, pos] = v.view(b, s, self.kv, self.d).transpose(1, 2)
        keys = self.k_cache.repeat_interleave(self.a // self.kv, dim=1)
        values = self.v_cache.repeat_interleave(self.a // self.kv, dim=1)
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = x + self.wo(o.transpose(1, 2).contiguous().view(b, s, self.h))
        y = self._norm(x, self.g_ffn)
        return x + self.w2(F.silu(self.w1(y)) * self.w3(y))


def static_cache_decode_kernels(h: int = 256, heads: int = 4, kv_heads: int = 4, ffn: int = 688,
                                max_seq: int = 32) -> int:
    """Kernels one :class:`StaticCacheLlamaLayer` launches to decode a token (gpt-fast's
    generate loop runs under ``torch.no_grad``); the position's mask row and RoPE row are cut
    from the model's tables once per forward (``Transformer.forward``), not per layer."""
    torch.manual_seed(0)
    layer = StaticCacheLlamaLayer(h, heads, kv_heads, ffn, max_seq).to(torch.bfloat16)
    pos = torch.tensor([max_seq // 2])
    x = torch.randn(1, 1, h, dtype=torch.bfloat16)
    freqs = torch.randn(1, h // heads // 2, 2, dtype=torch.bfloat16)
    mask = torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool))[None, None, pos]
    with torch.no_grad(), KernelTrace() as tr:
        layer(x, pos, freqs, mask)
    return len(tr.ops)


class TinyGPT(nn.Module):
    """A GPT-2-style model of :class:`GPTLayer`: token and position embeddings, L layers, final
    LayerNorm, an output layer tied to the token embedding."""

    def __init__(self, layers: int, h: int, heads: int, vocab: int, seq: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, h), nn.Embedding(seq, h)
        self.blocks = nn.ModuleList(GPTLayer(h, heads, 4 * h) for _ in range(layers))
        self.ln_f = nn.LayerNorm(h)
        self.lm_head = nn.Linear(h, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


def step_peak_bytes(layers: int = 2, h: int = 256, heads: int = 4, vocab: int = 2048, seq: int = 128,
                    batch: int = 8, steps: int = 3) -> dict[str, int]:
    """Peak live bytes of a training step as an AMP loop runs it — fp32 parameters,
    ``torch.autocast(bfloat16)`` forward, ``F.cross_entropy(logits.float(), y)``, backward,
    ``torch.optim.AdamW(foreach=True).step()``, ``zero_grad(set_to_none=True)`` — on the CPU,
    in the steady state (the last of ``steps`` steps). ``peak_bytes`` = the parameters and the
    optimizer's states that persist across steps (counted tensor by tensor) + the largest sum
    of the step's own live tensors (:class:`LiveBytes`)."""
    torch.manual_seed(0)
    model = TinyGPT(layers, h, heads, vocab, seq)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    idx, y = torch.randint(0, vocab, (batch, seq)), torch.randint(0, vocab, (batch, seq))
    transient = 0
    for _ in range(steps):
        with LiveBytes(skip=(idx, y)) as live:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(idx)
            loss = F.cross_entropy(logits.float().view(-1, vocab), y.view(-1))
            loss.backward()
            del logits, loss
            opt.step()
        transient = live.peak
    params = list(model.parameters())
    persistent = sum(p.untyped_storage().nbytes() for p in params)
    persistent += sum(t.untyped_storage().nbytes() for st in opt.state.values() for t in st.values()
                      if isinstance(t, torch.Tensor) and t.dim() > 0)
    return {"params": sum(p.numel() for p in params), "persistent_bytes": persistent,
            "step_transient_peak_bytes": transient, "peak_bytes": persistent + transient}


def predicted_step_peak_bytes(layers: int = 2, h: int = 256, heads: int = 4, vocab: int = 2048, seq: int = 128,
                              batch: int = 8) -> float:
    """xlayer's peak for the same step (pytorch-eager profile, one H100), less the cuBLAS
    workspace a CPU run does not allocate."""
    from xlayer.mapping.profiles import get_profile
    from xlayer.prediction.case import case_from_dict
    from xlayer.prediction.training import predict_training

    case = case_from_dict({
        "id": "tiny-gpt", "kind": "training", "software": {"framework": "pytorch", "mode": "eager"},
        "model": {"layers": layers, "hidden": h, "heads": heads, "ffn_hidden": 4 * h, "vocab": vocab, "seq_len": seq,
                  "activation": "gelu", "bias": True, "tied_embeddings": True, "norm": "layernorm",
                  "position": "learned"},
        "system": {"accelerator": "H100-SXM-80GB", "count": 1}, "parallel": {"tp": 1, "pp": 1, "dp": 1},
        "batch": {"global": batch, "micro": batch}, "precision": "bf16"})
    return float(predict_training(case).memory_bytes) - get_profile("pytorch-eager").step_memory.library_workspace_bytes


def main() -> int:
    rows = [dict(h=256, heads=8, kv_heads=8, ffn=688, seq=128, batch=2, vocab=4096),
            dict(h=512, heads=8, kv_heads=8, ffn=1376, seq=256, batch=1, vocab=8192)]
    print("| config | quantity | measured (B) | xlayer pytorch-eager (B) | fused formula (B) | error |")
    print("|---|---|---|---|---|---|")
    for cfg in rows:
        got, want = measure(**cfg), predicted(**cfg)
        fused = predicted(**cfg, profile=None)
        name = f"h{cfg['h']} s{cfg['seq']} b{cfg['batch']} V{cfg['vocab']}"
        for k in got:
            print(f"| {name} | {k} | {got[k]:,} | {want[k]:,.0f} | {fused[k]:,.0f} | "
                  f"{100 * (want[k] - got[k]) / got[k]:+.2f} % |")
    print()
    print("| whole AMP step (tiny GPT, 2 layers, h 256) | measured peak (B/param) | xlayer (B/param) | error |")
    print("|---|---|---|---|")
    for b, sq in ((1, 32), (8, 128)):
        got = step_peak_bytes(batch=b, seq=sq)
        want = predicted_step_peak_bytes(batch=b, seq=sq)
        print(f"| batch {b} x {sq} tokens | {got['peak_bytes'] / got['params']:.2f} | {want / got['params']:.2f} | "
              f"{100 * (want - got['peak_bytes']) / got['peak_bytes']:+.1f} % |")
    print()
    from xlayer.cost.memory import op_sac_activation_bytes
    from xlayer.workload.model import ModelSpec
    from xlayer.workload.training_ops import layer_work
    h, heads, kv, ffn, seq, b = 256, 8, 2, 688, 128, 2
    sac, _ = op_sac_held_bytes(h, heads, kv, ffn, seq, b)
    m = ModelSpec(name="l", layers=2, hidden=h, heads=heads, kv_heads=kv, ffn_hidden=ffn, vocab=4096, seq_len=seq,
                  activation="swiglu", position="rope", norm="rmsnorm", bias=False)
    want = op_sac_activation_bytes(layer_work(m, b, 1, False, 1, "bf16", "flash", 0.0, eager_modules=True), b * seq, h)
    print("| Llama layer under torchtitan's per-op selective checkpointing | measured (B) | xlayer op_sac (B) | error |")
    print("|---|---|---|---|")
    print(f"| h{h} s{seq} b{b} GQA {heads}/{kv} | {sac:,} | {want:,.0f} | {100 * (want - sac) / sac:+.2f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
