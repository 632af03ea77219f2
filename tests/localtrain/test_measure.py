import torch
import torch.nn as nn

from xlayer.localtrain.measure import account_step, memory_of_step, module_times
from xlayer.localtrain.methods import LocalLearner, MethodConfig
from xlayer.localtrain.nets import resnet


def test_hand_count_tiny_mlp():
    # Linear(4,8) -> ReLU -> Linear(8,2) -> sum(out^2), batch 3, float32, SGD with momentum.
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(3, 4)
    pb, gb, ob, sb = account_step(lambda: model(x).pow(2).sum().backward(), model, opt)
    n_params = 4 * 8 + 8 + 8 * 2 + 2                          # 58
    assert (pb, gb, ob) == (4 * n_params,) * 3
    # saved for backward: x (addmm of layer 1), ReLU output (shared by ReLU and layer 2's
    # addmm: one storage), out (pow); the weights are parameters and not counted again
    assert sb == 4 * (3 * 4 + 3 * 8 + 3 * 2)                   # 168 bytes


def test_saved_tensors_are_released_after_backward():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    from xlayer.localtrain.measure import SavedTensorTracker
    tr = SavedTensorTracker(list(model.parameters()))
    with tr.hooks():
        model(torch.rand(2, 4)).sum().backward()
    assert tr.peak_bytes > 0 and tr.live_bytes == 0


def _mem(method, K, p=0):
    torch.manual_seed(0)
    learner = LocalLearner(resnet("resnet32", 1, 12), MethodConfig(method, K, p))
    x, y = torch.rand(4, 1, 12, 12), torch.randint(0, 10, (4,))
    return memory_of_step(learner, x, y)


def test_local_uses_less_memory_than_backprop_and_backlink_in_between():
    bp, gr, bl = _mem("backprop", 1), _mem("greedy", 4), _mem("backlink", 4, 1)
    assert bp.peak_saved_bytes > gr.peak_saved_bytes
    assert bp.peak_bytes > gr.peak_bytes
    assert gr.peak_saved_bytes < bl.peak_saved_bytes < bp.peak_saved_bytes
    assert bp.peak_bytes == bp.param_bytes + bp.grad_bytes + bp.optimizer_state_bytes + bp.peak_saved_bytes


def test_module_times_shapes():
    torch.manual_seed(0)
    learner = LocalLearner(resnet("resnet8", 1, 8), MethodConfig("backlink", 2, 1, split="even"))
    t = module_times(learner, torch.rand(2, 1, 8, 8), torch.randint(0, 10, (2,)), warmup=0, repeats=1)
    assert len(t.fwd_s) == len(t.bwd_s) == len(t.tail_bwd_s) == 2
    assert all(v >= 0 for v in t.fwd_s + t.bwd_s + t.aux_fwd_s + t.aux_bwd_s)
    assert t.tail_bwd_s[-1] == 0.0


def test_module_times_min_statistic():
    import pytest
    from xlayer.errors import InputError
    torch.manual_seed(0)
    learner = LocalLearner(resnet("resnet8", 1, 8), MethodConfig("backlink", 2, 1, split="even"))
    x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 10, (2,))
    t = module_times(learner, x, y, warmup=0, repeats=2, stat="min")
    assert len(t.fwd_s) == 2 and all(v >= 0 for v in t.fwd_s + t.bwd_s)
    with pytest.raises(InputError):
        module_times(learner, x, y, stat="mean")
