"""FunctionalNet: shapes, parameter counts, double backward, float64, functional equivalence."""
import pytest
import torch
import torch.nn.functional as F

from ddfad_fast.config import ModelConfig
from ddfad_fast.errors import ParameterError
from ddfad_fast.train.models import MODEL_NAMES, build_model

SHAPES = [(3, 20, 101), (3, 20, 126), (3, 3, 5)]
# parameter counts for width 8, depth 3, 10 classes (fixed so an accidental change is caught)
EXPECTED_PARAMS = {("convnet", (3, 20, 101)): 3370, ("convnet", (3, 20, 126)): 3850,
                   ("vgg", (3, 20, 101)): 12946, ("vgg", (3, 20, 126)): 13906,
                   ("resnet", (3, 20, 101)): 10226, ("resnet", (3, 20, 126)): 10226}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_and_param_count(name, shape):
    net = build_model(ModelConfig(name=name, width=8, depth=3), shape, 10)
    params = net.init_params(torch.Generator().manual_seed(0))
    assert params.shape == (net.num_params,) and params.dtype == torch.float32
    logits = net.forward(params, torch.randn(4, *shape, generator=torch.Generator().manual_seed(1)))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    if (name, shape) in EXPECTED_PARAMS:
        assert net.num_params == EXPECTED_PARAMS[(name, shape)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_double_backward_float64(name):
    net = build_model(ModelConfig(name=name, width=2, depth=2), (3, 4, 5), 3)
    gen = torch.Generator().manual_seed(2)
    params = net.init_params(gen, dtype=torch.float64).requires_grad_()
    x = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])

    def grad_norm(p, inp):
        g, = torch.autograd.grad(F.cross_entropy(net.forward(p, inp), y), p, create_graph=True)
        return g.pow(2).sum()

    assert torch.autograd.gradgradcheck(lambda p, inp: F.cross_entropy(net.forward(p, inp), y), (params, x),
                                        atol=1e-5, rtol=1e-4)
    hv = torch.autograd.grad(grad_norm(params, x), [params, x])
    assert all(torch.isfinite(h).all() and h.abs().sum() > 0 for h in hv)


def test_init_is_seeded_and_float64_matches():
    net = build_model(ModelConfig(width=4, depth=2), (3, 8, 8), 5)
    a = net.init_params(torch.Generator().manual_seed(5))
    b = net.init_params(torch.Generator().manual_seed(5), dtype=torch.float64)
    c = net.init_params(torch.Generator().manual_seed(6))
    assert torch.equal(a, b.float()) and not torch.equal(a, c)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(net.forward(a, x.float()).double(), net.forward(b, x), atol=1e-5, rtol=1e-4)


def test_convnet_matches_torch_modules():
    """The functional ConvNet equals the same net built from torch.nn modules."""
    torch.manual_seed(0)
    width, shape = 6, (3, 20, 101)
    net = build_model(ModelConfig(width=width, depth=3), shape, 10)
    layers, c = [], 3
    for _ in range(3):
        layers += [torch.nn.Conv2d(c, width, 3, padding=1), torch.nn.GroupNorm(width, width),
                   torch.nn.ReLU(), torch.nn.AvgPool2d(2)]
        c = width
    layers += [torch.nn.Flatten(), torch.nn.Linear(width * 2 * 12, 10)]
    ref = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    flat = torch.cat([p.detach().flatten() for p in ref.parameters()])
    assert flat.numel() == net.num_params
    x = torch.randn(5, *shape)
    torch.testing.assert_close(net.forward(flat, x), ref(x), atol=1e-4, rtol=1e-4)


def test_bad_arguments():
    with pytest.raises(ParameterError, match="alexnet"):
        build_model(ModelConfig(name="alexnet"), (3, 20, 101), 10)
    net = build_model(ModelConfig(width=4, depth=1), (3, 4, 4), 2)
    with pytest.raises(ParameterError, match="flat_params"):
        net.forward(torch.zeros(3), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ParameterError, match="x must have shape"):
        net.forward(net.init_params(), torch.zeros(1, 3, 5, 4))
