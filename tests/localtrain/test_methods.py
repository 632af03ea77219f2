"""Gradient correctness of the training step, checked with torch.autograd on individual losses."""
import pytest
import torch
import torch.nn.functional as F

from xlayer.errors import InputError
from xlayer.localtrain.methods import LocalLearner, MethodConfig
from xlayer.localtrain.nets import resnet

B, S = 4, 8


def make(method, K, p=0, head=None, depth="resnet14", seed=0):
    torch.manual_seed(seed)
    net = resnet(depth, in_channels=1, image_size=S)        # resnet14: 7 units
    return LocalLearner(net, MethodConfig(method, K, p, head, split="even")).double()


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 1, S, S, generator=g, dtype=torch.float64), torch.randint(0, 10, (B,), generator=g)


def step_grads(learner, x, y):
    learner.zero_grad(set_to_none=True)
    learner.train_step(x, y)
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in learner.named_parameters()}


def reference_losses(learner, x_raw, y):
    """BackLink losses on one graph, T_k computed twice (the 'simpler' exact implementation)."""
    x = learner.net.prepare(x_raw)
    inp, link, losses = x, None, []
    for k in range(learner.K):
        H, T = learner.module_parts(k)
        h = link if link is not None else inp.detach()
        for u in H:
            h = u(h)
        a, out = h, h
        for u in T:
            out = u(out)
        losses.append(learner.heads[k].loss(out, x_raw, y))
        if T:
            link = a.detach()
            for u in T:
                link = u(link)
        else:
            link, inp = None, out
    return losses


def per_loss_grads(learner, x, y):
    params = dict(learner.named_parameters())
    losses = reference_losses(learner, x, y)
    out = []
    for L in losses:
        gs = torch.autograd.grad(L, list(params.values()), retain_graph=True, allow_unused=True)
        out.append({n: (g if g is not None else torch.zeros_like(p))
                    for (n, p), g in zip(params.items(), gs)})
    return out


def unit_params(learner, unit_idx):
    return [f"net.units.{i}." for i in unit_idx]


def _close(a, b):
    return all(torch.allclose(a[n], b[n], atol=1e-12, rtol=1e-10) for n in a)


def test_p0_equals_greedy_exactly():
    x, y = batch()
    g1 = step_grads(make("backlink", 3, p=0), x, y)
    g2 = step_grads(make("greedy", 3), x, y)
    assert g1.keys() == g2.keys()
    assert all(torch.equal(g1[n], g2[n]) for n in g1)


@pytest.mark.parametrize("method,p", [("greedy", 0), ("backlink", 0), ("dgl", 0), ("backprop", 0)])
def test_K1_equals_backprop(method, p):
    x, y = batch()
    learner = make(method, 1, p)
    g = step_grads(learner, x, y)
    ref = make("backprop", 1)
    ref.zero_grad()
    F.cross_entropy(ref.net(x), y).backward()
    for n, prm in ref.net.named_parameters():
        assert torch.allclose(g["net." + n], prm.grad, atol=1e-12, rtol=1e-10), n


@pytest.mark.parametrize("head", ["linear", "mlp-sr", "infopro-softmax"])
def test_backlink_gradient_flow(head):
    K, p = 3, 1
    x, y = batch()
    learner = make("backlink", K, p, head=head)
    step = step_grads(learner, x, y)
    per = per_loss_grads(learner, x, y)
    total = {n: sum(g[n] for g in per) for n in step}
    assert _close(step, total)                                   # step = sum of individual losses
    for k in range(K - 1):
        idx = learner.module_units[k]
        head_units, tail_units = idx[:-p], idx[-p:]
        for n in step:
            if any(n.startswith(pre) for pre in unit_params(learner, head_units)):
                assert torch.count_nonzero(per[k + 1][n]) == 0, n   # H_k: nothing from L_{k+1}
                assert torch.allclose(step[n], per[k][n], atol=1e-12)
        tail_names = [n for n in step if any(n.startswith(pre) for pre in unit_params(learner, tail_units))]
        assert tail_names
        for n in tail_names:                                       # T_k: L_k and L_{k+1}
            assert torch.allclose(step[n], per[k][n] + per[k + 1][n], atol=1e-12)
        conv = [n for n in tail_names if n.endswith("conv1.weight")][0]
        assert torch.count_nonzero(per[k][conv]) > 0 and torch.count_nonzero(per[k + 1][conv]) > 0
        # no error from L_{k+2} reaches module k at all
        if k + 2 < K:
            assert all(torch.count_nonzero(per[k + 2][n]) == 0 for n in step
                       if any(n.startswith(pre) for pre in unit_params(learner, idx)))


def test_local_modules_are_isolated():
    x, y = batch()
    learner = make("greedy", 3)
    per = per_loss_grads(learner, x, y)
    step = step_grads(learner, x, y)
    for k, idx in enumerate(learner.module_units):
        for n in step:
            if any(n.startswith(pre) for pre in unit_params(learner, idx)):
                assert torch.allclose(step[n], per[k][n], atol=1e-12)
                assert all(torch.count_nonzero(per[j][n]) == 0 for j in range(len(per)) if j != k)


def test_bad_method_inputs():
    net = resnet("resnet32", 1)
    with pytest.raises(InputError) as e:
        LocalLearner(net, MethodConfig("backlnk", 4))
    assert "backlink" in str(e.value)
    with pytest.raises(InputError) as e:
        LocalLearner(net, MethodConfig("backlink", 4, p=5))    # smallest of modules 1..3 has 4 units
    assert "0..4" in str(e.value)
    with pytest.raises(InputError):
        LocalLearner(net, MethodConfig("greedy", 5))
    with pytest.raises(InputError):
        LocalLearner(net, MethodConfig("greedy", 4, p=1))
    with pytest.raises(InputError):
        LocalLearner(net, MethodConfig("backlink", 4, p=1, head="mlp"))
