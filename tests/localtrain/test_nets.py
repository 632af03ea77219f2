import pytest
import torch

from xlayer.errors import InputError
from xlayer.localtrain.nets import (BALANCED_SPLITS, PUBLISHED_SPLITS, even_split, make_split,
                                    resnet, split_by_boundaries)


def test_unit_counts_and_shapes():
    r32, r110 = resnet("resnet32"), resnet("resnet110")
    assert len(r32.units) == 16 and len(r110.units) == 55
    assert r32.unit_names[0] == (0, 0) and r32.unit_names[-1] == (3, 4)
    assert [u.size for u in r32.unit_info][-1] == 8
    gray = resnet("resnet32", in_channels=1)
    assert gray.image_size == 28 and gray.unit_info[-1].size == 7
    assert gray(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # unit_info matches the real shapes
    h = gray.prepare(torch.rand(2, 1, 28, 28))
    for u, info in zip(gray.units, gray.unit_info):
        h = u(h)
        assert h.shape[1:] == (info.channels, info.size, info.size)


@pytest.mark.parametrize("name,K", sorted(PUBLISHED_SPLITS) + sorted(BALANCED_SPLITS))
def test_tables_give_K_contiguous_modules(name, K):
    net = resnet(name)
    for scheme in ("published", "balanced"):
        table = PUBLISHED_SPLITS if scheme == "published" else BALANCED_SPLITS
        if (name, K) not in table:
            continue
        mods = make_split(net, K, scheme)
        assert len(mods) == K
        assert sum(mods, []) == list(range(len(net.units)))


def test_resnet32_k16_is_every_unit():
    assert make_split(resnet("resnet32"), 16) == [[i] for i in range(16)]


def test_split_by_boundaries_and_even():
    names = resnet("resnet32").unit_names
    assert split_by_boundaries(names, [(1, 2), (2, 1), (3, 0)]) == [
        list(range(0, 4)), list(range(4, 8)), list(range(8, 12)), list(range(12, 16))]
    assert even_split(5, 2) == [[0, 1, 2], [3, 4]]


def test_bad_split_input():
    net = resnet("resnet32")
    with pytest.raises(InputError) as e:
        make_split(net, 3)
    assert "K" in str(e.value) and "2, 4, 8, 16" in str(e.value)
    with pytest.raises(InputError):
        make_split(net, 2, "balanced")
    with pytest.raises(InputError):
        make_split(net, 2, "weird")
    with pytest.raises(InputError):
        even_split(16, 17)
    with pytest.raises(InputError):
        split_by_boundaries(net.unit_names, [(2, 1), (1, 2)])
    with pytest.raises(InputError):
        resnet("vgg16")
