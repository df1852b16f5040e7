"""ResNet's BasicBlock computes with its registered children: a submodule replaced after construction
(a fine-tuning or ablation move) changes the forward and backward, in training and inference, exactly
as a block built with it from the start; checked against PyTorch where installed."""
import copy

import numpy as np
import pytest

import npnet
from npnet import nn
from npnet.models import build_model
from npnet.models.resnet import BasicBlock, ShortcutA

pytestmark = pytest.mark.usefixtures("kernel_mode")  # Numba kernels and NumPy twins


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run(model, x, dout):
    """Training-mode output, input gradient and parameter gradients of one forward/backward."""
    model.zero_grad()
    out = model(x)
    dx = model.backward(dout)
    return out, dx, {k: p.grad.copy() for k, p in model.named_parameters()}


def assert_same(a, b):
    (oa, da, ga), (ob, db, gb) = a, b
    np.testing.assert_allclose(oa, ob, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(da, db, rtol=1e-4, atol=1e-5)
    assert ga.keys() == gb.keys()
    for k in ga:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-4, atol=1e-5, err_msg=k)


def replacements(c):
    """Each child of a (c -> c) block and a new module of the same kind with other weights."""
    return {"conv1": lambda: nn.Conv2d(c, c, 3, 1, 1, bias=False, rng=11),
            "bn1": lambda: nn.BatchNorm2d(c, momentum=0.3),
            "relu1": lambda: nn.LeakyReLU(0.2),
            "conv2": lambda: nn.Conv2d(c, c, 3, 1, 1, bias=False, rng=12),
            "bn2": lambda: nn.BatchNorm2d(c, eps=1e-3),
            "shortcut": lambda: nn.Conv2d(c, c, 1, bias=False, rng=13),
            "relu2": lambda: nn.LeakyReLU(0.1)}


def by_hand(block, x, dout):
    """``run`` on a copy of ``block``, its children called one by one: the block's formula written out."""
    b = copy.deepcopy(block)
    b.zero_grad()
    branch = [b.conv1, b.bn1, b.relu1, b.conv2, b.bn2]
    y = x
    for m in branch:
        y = m(y)
    out = b.relu2(y + b.shortcut(x))
    d = b.relu2.backward(dout)
    dy = d
    for m in reversed(branch):
        dy = m.backward(dy)
    dx = dy + b.shortcut.backward(d)
    return out, dx, {k: p.grad.copy() for k, p in b.named_parameters()}


def fresh_equivalent(block, name, make):
    """A block built anew, with ``name`` replaced before its first use and ``block``'s weights."""
    twin = BasicBlock(block.conv1.in_channels, block.conv1.out_channels, rng=99)
    setattr(twin, name, make())
    twin.load_state_dict(block.state_dict())
    return twin


@pytest.mark.parametrize("name", list(replacements(8)))
def test_a_replaced_child_is_the_one_that_computes(name):
    block = BasicBlock(8, 8, rng=0)
    block(rand((2, 8, 6, 6), 1))                              # used once before the replacement
    setattr(block, name, replacements(8)[name]())
    x, dout = rand((3, 8, 6, 6), 2), rand((3, 8, 6, 6), 3)
    want = by_hand(block, x, dout)
    assert_same(run(fresh_equivalent(block, name, replacements(8)[name]), x, dout), want)
    got = run(block, x, dout)
    assert_same(got, want)
    new = getattr(block, name)
    assert all(np.abs(p.grad).sum() > 0 for p in new.parameters())  # the new module is trained
    assert list(block.state_dict()) == list(want_keys(name))         # keys keep their order


def want_keys(name):
    twin = BasicBlock(8, 8, rng=0)
    setattr(twin, name, replacements(8)[name]())
    return twin.state_dict()


@pytest.mark.parametrize("name", ["bn1", "relu2", "conv2"])
def test_replacing_a_child_inside_resnet32(name):
    model = build_model("resnet32", (3, 12, 12), 10, rng=0)
    block = model[3]                                          # the first block of stage 1
    model(rand((2, 3, 12, 12), 4))
    setattr(block, name, replacements(16)[name]())
    fresh = build_model("resnet32", (3, 12, 12), 10, rng=5)
    setattr(fresh[3], name, replacements(16)[name]())
    fresh.load_state_dict(model.state_dict())
    x, dout = rand((2, 3, 12, 12), 6), rand((2, 10), 7)
    assert_same(run(model, x, dout), run(fresh, x, dout))


def test_swapped_activation_gives_the_same_function_in_training_and_inference():
    block = BasicBlock(16, 16, rng=0)
    block.relu2 = nn.LeakyReLU(0.1)
    block.relu1 = nn.LeakyReLU(0.2)
    block.eval()
    x = rand((2, 16, 6, 6), 8)
    with_grad = block(x)
    with npnet.no_grad():
        without = block(x)
    assert (with_grad < 0).any()                              # the LeakyReLU's negative side is there
    np.testing.assert_allclose(without, with_grad, rtol=1e-5, atol=1e-6)


def test_block_with_replaced_children_matches_torch():
    torch = pytest.importorskip("torch")
    block = BasicBlock(4, 8, stride=2, rng=0)
    block.relu2 = nn.LeakyReLU(0.1)
    block.bn1 = nn.BatchNorm2d(8, momentum=0.3)
    tconv1, tconv2 = (torch.nn.Conv2d(c, 8, 3, s, 1, bias=False) for c, s in ((4, 2), (8, 1)))
    tbn1, tbn2 = torch.nn.BatchNorm2d(8, momentum=0.3), torch.nn.BatchNorm2d(8)
    for t, m in ((tconv1, block.conv1), (tconv2, block.conv2), (tbn1, block.bn1), (tbn2, block.bn2)):
        t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    x, dout = rand((3, 4, 7, 7), 9), rand((3, 8, 4, 4), 10)
    tx = torch.from_numpy(x).requires_grad_(True)
    branch = tbn2(tconv2(torch.relu(tbn1(tconv1(tx)))))
    sub = tx[:, :, ::2, ::2]
    shortcut = torch.nn.functional.pad(sub, (0, 0, 0, 0, 2, 2))          # option A: 2 zero channels each side
    tout = torch.nn.functional.leaky_relu(branch + shortcut, 0.1)
    tout.backward(torch.from_numpy(dout))
    out, dx, grads = run(block, x, dout)
    assert isinstance(block.shortcut, ShortcutA)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads["bn1.weight"], tbn1.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads["conv1.weight"], tconv1.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(block.bn1.running_var, tbn1.running_var.numpy(), rtol=1e-5)


def test_block_backward_leaves_a_hooked_first_layers_gradient_alone():
    """The block adds the shortcut's gradient into the branch's in place, except where the branch's
    first layer has a hook (the hook may keep the array it was shown); results equal either way."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    dout = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    plain, hooked = BasicBlock(8, 8, rng=3), BasicBlock(8, 8, rng=3)
    seen = []
    hooked.conv1.register_full_backward_hook(lambda m, gin, gout: seen.append((gin[0], gin[0].copy())))
    got = [(b(x), b.backward(dout))[1] for b in (plain, hooked)]
    np.testing.assert_array_equal(got[0], got[1])
    kept, copy = seen[0]
    np.testing.assert_array_equal(kept, copy)                 # what the hook was shown was not changed
    assert not np.shares_memory(kept, got[1])
