"""ddfad_fast.train.mtt: trajectory matching for any nn.Module. The constant-memory reverse sweep equals autograd
through every step (float64, 1e-10) for a ConvNet with instance norm, a small ResNet with batch statistics
and an MLP, with soft labels, a custom loss and augmentation; stateful layers are refused."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddfad_fast.train import mtt
from ddfad_fast.errors import ParameterError


def convnet() -> nn.Module:
    """MTT's ConvNet (conv 3x3, instance norm, ReLU, average pooling per block) at a test's size."""
    return mtt.convnet(channels=3, num_classes=4, width=8, depth=2, image_size=8)


class TinyResNet(nn.Module):
    """One residual block with batch statistics (no running statistics: a pure function)."""

    def __init__(self, width: int = 6, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width, track_running_stats=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width, track_running_stats=False)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(h + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(h))))))
        return self.head(h.mean(dim=(2, 3)))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.Tanh(), nn.Linear(16, 4))


def _problem(module: nn.Module, n: int = 8, soft: bool = False, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    net = mtt.ModuleNet(module)
    start = net.flatten()
    target = start + 0.05 * torch.randn(net.num_params, generator=gen, dtype=torch.float64)
    x = torch.randn(n, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 4, generator=gen, dtype=torch.float64) if soft else torch.arange(n) % 4
    return net, x, y, start, target


def _same(a: mtt.UnrollResult, b: mtt.UnrollResult) -> None:
    for name in ("loss", "grad_x", "grad_alpha", "theta_final", "grad_y"):
        u, v = getattr(a, name), getattr(b, name)
        if u is None or v is None:
            assert u is None and v is None, name
            continue
        scale = max(float(v.abs().max()), 1e-30)
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10 * scale, msg=name)


@pytest.mark.parametrize("make", [convnet, TinyResNet, mlp], ids=["convnet", "resnet", "mlp"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_reverse_gradient_equals_naive_in_float64(make, soft):
    torch.manual_seed(0)
    net, x, y, start, target = _problem(make(), soft=soft)
    gen = lambda: torch.Generator().manual_seed(5)      # noqa: E731  (the same minibatches for both)
    rev = mtt.match(net, x, y, 0.05, start, target, steps=6, batch=4, generator=gen())
    naive = mtt.match(net, x, y, 0.05, start, target, steps=6, batch=4, generator=gen(), unroll_mode="naive")
    _same(rev, naive)
    assert float(rev.grad_x.abs().max()) > 0 and rev.grad_alpha.shape == ()
    assert (rev.grad_y is not None) == soft


def test_custom_loss_and_augmentation_are_replayed_exactly():
    torch.manual_seed(1)

    def flip_and_scale(x, seed):
        gen = torch.Generator().manual_seed(int(seed))
        flip = torch.rand(x.shape[0], 1, 1, 1, generator=gen, dtype=x.dtype) < 0.5
        scale = 1 + 0.1 * torch.randn(x.shape[0], 1, 1, 1, generator=gen, dtype=x.dtype)
        return torch.where(flip, x.flip(-1), x) * scale

    def squared_error(logits, labels):
        return (logits - F.one_hot(labels, logits.shape[-1]).to(logits.dtype)).square().mean()

    net, x, y, start, target = _problem(convnet())
    net = mtt.ModuleNet(net.module, loss_fn=squared_error, augment=flip_and_scale)
    runs = [mtt.match(net, x, y, torch.tensor(0.1, dtype=torch.float64), start, target, steps=5, batch=4,
                      generator=torch.Generator().manual_seed(3), unroll_mode=mode) for mode in ("reverse", "naive")]
    _same(*runs)
    plain = mtt.match(mtt.ModuleNet(net.module, loss_fn=squared_error), x, y, 0.1, start, target, steps=5, batch=4,
                      generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(plain.grad_x, runs[0].grad_x)                  # the augmentation is applied


def test_parameters_as_dict_list_or_flat_and_clear_errors():
    net, x, y, start, target = _problem(mlp())
    as_dict = net.unflatten(start)
    assert torch.equal(net.flatten(as_dict), start) and torch.equal(net.flatten(list(as_dict.values())), start)
    a = mtt.match(net, x, y, 0.05, as_dict, net.unflatten(target), steps=3)
    b = mtt.match(net, x, y, 0.05, start, target, steps=3)
    _same(a, b)
    with pytest.raises(ParameterError, match="lacks"):
        net.flatten({"1.weight": start})
    with pytest.raises(ParameterError, match="shape"):
        net.flatten(start[:-1])
    with pytest.raises(ParameterError, match="unroll_mode"):
        mtt.match(net, x, y, 0.05, start, target, steps=3, unroll_mode="fast")
    with pytest.raises(ParameterError, match="ModuleNet"):
        mtt.match(net.module, x, y, 0.05, start, target, steps=3)


def test_stateful_layers_are_refused_until_they_are_pure():
    bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ParameterError, match=r"1 \(BatchNorm2d\) updates its running statistics"):
        mtt.ModuleNet(bn)
    drop = nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.Dropout(0.2), nn.Linear(8, 2))
    with pytest.raises(ParameterError, match="Dropout"):
        mtt.ModuleNet(drop)
    net = mtt.ModuleNet(drop.eval())                 # evaluation mode: dropout off
    drop.train()
    with pytest.raises(ParameterError, match="Dropout"):
        mtt.match(net, torch.randn(4, 3, 8, 8), torch.arange(4) % 2, 0.1, net.flatten(), net.flatten() + 1, steps=2)


def test_compiled_steps_agree_with_eager():
    net, x, y, start, target = _problem(mlp())
    eager = mtt.match(net, x, y, 0.05, start, target, steps=4, batch=4, generator=torch.Generator().manual_seed(2))
    stepper = mtt.Stepper(net, compile=True)
    compiled = mtt.match(net, x, y, 0.05, start, target, steps=4, batch=4, generator=torch.Generator().manual_seed(2),
                         stepper=stepper)
    assert stepper.compiled, stepper.compile_error
    torch.testing.assert_close(compiled.grad_x, eager.grad_x, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(compiled.loss, eager.loss, rtol=1e-9, atol=0)
