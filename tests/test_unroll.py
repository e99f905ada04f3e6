"""The student unroll: exact reverse sweep vs full autograd, augmentation replay, compilation, memory."""
import weakref

import pytest
import torch

import ddfad_fast.train.memory as memory_mod
import ddfad_fast.train.unroll as unroll_mod
from helpers import compile_failure
from ddfad_fast.config import ModelConfig
from ddfad_fast.errors import ParameterError
from ddfad_fast.train.models import build_model
from ddfad_fast.train.memory import estimate_unroll_bytes
from ddfad_fast.train.unroll import Augment, Stepper, apply_augment, augment_tensors, make_plan, unroll

C, SHAPE, N_SYN = 4, (3, 6, 10), 8


pytestmark = pytest.mark.usefixtures("single_thread")


def _net(width=4, depth=2):
    return build_model(ModelConfig(width=width, depth=depth), SHAPE, C)


def _problem(net, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SYN, *SHAPE, generator=gen).to(dtype)
    y = torch.arange(N_SYN) % C
    theta0 = net.init_params(gen, dtype)
    target = theta0 + 0.05 * torch.randn(net.num_params, generator=gen).to(dtype)
    return x, y, torch.tensor(0.1, dtype=dtype), theta0, target


def _rel(a, b):
    return float((a - b).norm() / b.norm())


CASES = [(None, None, 6), (3, Augment(), 6), (4, Augment(max_shift=4, time_mask=3, freq_mask=2), 5)]
# float64 reverse sweep vs full autograd, relative error: what the README and docs/architecture.md claim
# (measured: below 2e-15 in every case here, eager and compiled)
EXACT = 1e-12


@pytest.mark.parametrize("batch,augment,steps", CASES)
def test_reverse_equals_naive_float64(batch, augment, steps):
    net = _net()
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, batch, steps, torch.Generator().manual_seed(1), augment is not None)
    ref = unroll(net, x, y, alpha, theta0, target, plan, "naive", augment)
    out = unroll(net, x, y, alpha, theta0, target, plan, "reverse", augment)
    assert float(ref.grad_x.norm()) > 0 and float(ref.grad_alpha.abs()) > 0
    assert _rel(out.loss, ref.loss) <= EXACT
    assert _rel(out.grad_x, ref.grad_x) <= EXACT
    assert _rel(out.grad_alpha, ref.grad_alpha) <= EXACT
    assert _rel(out.theta_final, ref.theta_final) <= EXACT


def test_reverse_equals_naive_float32():
    net = _net()
    x, y, alpha, theta0, target = _problem(net, torch.float32)
    plan = make_plan(N_SYN, 4, 6, torch.Generator().manual_seed(2), augment=True)
    ref = unroll(net, x, y, alpha, theta0, target, plan, "naive", Augment())
    out = unroll(net, x, y, alpha, theta0, target, plan, "reverse", Augment())
    assert _rel(out.grad_x, ref.grad_x) <= 1e-4 and _rel(out.grad_alpha, ref.grad_alpha) <= 1e-4


@pytest.mark.parametrize("batch,augment,steps", CASES)
@pytest.mark.parametrize("compiled", [False, True])
def test_soft_labels_reverse_equals_naive_float64(batch, augment, steps, compiled):
    """Learnable label logits: dL/dlogits of the reverse sweep (eager and compiled) equals full autograd,
    and full autograd equals a central finite difference of the loss."""
    net = _net()
    x, _, alpha, theta0, target = _problem(net)
    logits = torch.randn(N_SYN, C, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    plan = make_plan(N_SYN, batch, steps, torch.Generator().manual_seed(1), augment is not None)
    ref = unroll(net, x, logits, alpha, theta0, target, plan, "naive", augment)
    out = unroll(net, x, logits, alpha, theta0, target, plan, "reverse", augment, Stepper(net, compile=compiled))
    assert ref.grad_y is not None and float(ref.grad_y.norm()) > 0
    assert _rel(out.grad_y, ref.grad_y) <= EXACT and _rel(out.grad_x, ref.grad_x) <= EXACT
    assert _rel(out.grad_alpha, ref.grad_alpha) <= EXACT
    h, (i, j) = 1e-6, (2, 1)
    bumped = [logits.clone() for _ in range(2)]
    bumped[0][i, j] += h
    bumped[1][i, j] -= h
    up, down = (unroll(net, x, b, alpha, theta0, target, plan, "naive", augment).loss for b in bumped)
    assert abs(float((up - down) / (2 * h)) - float(ref.grad_y[i, j])) <= 1e-6 * max(1.0, float(ref.grad_y.abs().max()))


def test_hard_labels_have_no_label_gradient():
    net = _net()
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, None, 2, torch.Generator().manual_seed(1), False)
    assert unroll(net, x, y, alpha, theta0, target, plan, "reverse").grad_y is None
    with pytest.raises(ParameterError, match="soft-label logits"):
        unroll(net, x, torch.zeros(N_SYN, C + 1, dtype=torch.float64), alpha, theta0, target, plan, "reverse")


class _NoHessian(Stepper):
    """A wrong sweep that drops the Hessian term (the adjoint is never updated)."""

    def reverse(self, theta, xb, yb, aug, adjoint):
        hv, dx, dy, gda = super().reverse(theta, xb, yb, aug, adjoint)
        return torch.zeros_like(hv), dx, dy, gda


def test_dropping_the_hessian_term_is_caught():
    net = _net()
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, 3, 6, torch.Generator().manual_seed(1), augment=True)
    ref = unroll(net, x, y, alpha, theta0, target, plan, "naive", Augment())
    wrong = unroll(net, x, y, alpha, theta0, target, plan, "reverse", Augment(), stepper=_NoHessian(net))
    assert _rel(wrong.grad_x, ref.grad_x) > 1e-4


def test_wrong_augmentation_replay_is_caught():
    """Replaying other augmentation draws in the reverse sweep must not pass the tolerance."""
    net = _net()
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, 4, 5, torch.Generator().manual_seed(1), augment=True)
    ref = unroll(net, x, y, alpha, theta0, target, plan, "naive", Augment())

    class _Shifted(Stepper):
        def reverse(self, theta, xb, yb, aug, adjoint):
            index, mask = aug
            return super().reverse(theta, xb, yb, (index.roll(1, dims=-1), mask), adjoint)

    wrong = unroll(net, x, y, alpha, theta0, target, plan, "reverse", Augment(), stepper=_Shifted(net))
    assert _rel(wrong.grad_x, ref.grad_x) > 1e-4


def test_make_plan():
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    plan = make_plan(10, 4, 7, gen(), augment=True)
    assert plan.indices.shape == (7, 4) and plan.seeds.shape == (7,)
    assert torch.equal(plan.indices, make_plan(10, 4, 7, gen(), augment=True).indices)
    for row in plan.indices:
        assert len(set(row.tolist())) == 4
    # two chunks of 4 per permutation of 10: steps 0 and 1 are disjoint
    assert not set(plan.indices[0].tolist()) & set(plan.indices[1].tolist())
    whole = make_plan(10, None, 3, gen(), augment=False)
    assert whole.seeds is None and torch.equal(whole.indices, torch.arange(10).expand(3, 10))
    with pytest.raises(ParameterError, match="syn_steps"):
        make_plan(10, 4, 0, gen(), augment=False)


def test_augmentation_is_replayable_and_differentiable():
    aug = Augment(max_shift=3, time_mask=4, freq_mask=2)
    index, mask = augment_tensors(aug, 123, 5, 6, 10, torch.float64)
    again = augment_tensors(aug, 123, 5, 6, 10, torch.float64)
    assert torch.equal(index, again[0]) and torch.equal(mask, again[1])
    others = [augment_tensors(aug, s, 5, 6, 10, torch.float64) for s in range(4)]
    assert any(not torch.equal(index, i) or not torch.equal(mask, m) for i, m in others)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    zero_frames = (mask[:, 0] == 0).all(dim=1).sum(dim=1)        # fully masked time frames per clip
    assert int(zero_frames.max()) <= aug.time_mask
    x = torch.randn(5, 3, 6, 10, dtype=torch.float64)
    rolled = apply_augment(x, index, torch.ones_like(mask))
    for b in range(5):
        shift = int(-index[b, 0, 0, 0]) % 10
        assert abs(shift if shift <= 5 else shift - 10) <= aug.max_shift
        torch.testing.assert_close(rolled[b], torch.roll(x[b], shift, dims=-1), rtol=0, atol=0)
    torch.testing.assert_close(apply_augment(x, index, mask), rolled * mask, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda t: apply_augment(t, index, mask), (x.clone().requires_grad_(),))


def test_bad_inputs():
    net = _net()
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, None, 2, torch.Generator(), augment=False)
    with pytest.raises(ParameterError, match="unroll mode"):
        unroll(net, x, y, alpha, theta0, target, plan, "checkpointed")
    with pytest.raises(ParameterError, match="theta_start"):
        unroll(net, x, y, alpha, theta0[:-1], target, plan, "reverse")
    with pytest.raises(ParameterError, match="synthetic data"):
        unroll(net, x[:, :, :5], y, alpha, theta0, target, plan, "reverse")


class _SavedTensorMeter:
    """Live and peak bytes of tensors saved for backward (the autograd graph), via saved_tensors_hooks."""

    class _Box:
        def __init__(self, tensor):
            self.tensor = tensor

    def __init__(self):
        self.live = self.peak = 0

    def _free(self, n):
        self.live -= n

    def pack(self, tensor):
        box = self._Box(tensor)
        n = tensor.numel() * tensor.element_size()
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(box, self._free, n)
        return box

    def unpack(self, box):
        return box.tensor


def _graph_peak(mode, steps):
    net = _net(width=8)
    x, y, alpha, theta0, target = _problem(net, torch.float32)
    plan = make_plan(N_SYN, None, steps, torch.Generator().manual_seed(1), augment=True)
    meter = _SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        unroll(net, x, y, alpha, theta0, target, plan, mode, Augment())
    return meter.peak


def test_reverse_graph_memory_does_not_grow_with_steps():
    """The peak of live saved-for-backward bytes: flat in N for reverse, linear for naive."""
    naive2, naive8 = _graph_peak("naive", 2), _graph_peak("naive", 8)
    rev2, rev8 = _graph_peak("reverse", 2), _graph_peak("reverse", 8)
    assert naive8 > 3 * naive2                      # the meter sees a graph that grows
    assert rev8 <= 1.05 * rev2 and rev2 > 0
    assert rev8 < naive8 / 3


def test_memory_estimate():
    """On the shapes of the benchmark (meta-device tracing: nothing is allocated)."""
    net = build_model(ModelConfig(width=32, depth=3), (3, 20, 101), 10)
    act = memory_mod.activation_elements_per_sample(net)
    assert 3 * 32 * 20 * 101 < act < 10 * 32 * 20 * 101     # conv, norm, relu outputs of layer 1 dominate
    naive = [estimate_unroll_bytes(net, 100, n, "naive") for n in (10, 40)]
    reverse = [estimate_unroll_bytes(net, 100, n, "reverse") for n in (10, 40)]
    assert naive[1] > 3.5 * naive[0]
    assert reverse[1] < 1.2 * reverse[0] and reverse[1] < naive[1] / 8
    assert estimate_unroll_bytes(net, 100, 10, "reverse", torch.float64) > 1.9 * reverse[0]


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise compile_failure("no C++ compiler")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    net = _net()
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, 4, 3, torch.Generator().manual_seed(1), augment=False)
    stepper = Stepper(net, compile=True)
    out = unroll(net, x, y, alpha, theta0, target, plan, "reverse", stepper=stepper)
    ref = unroll(net, x, y, alpha, theta0, target, plan, "reverse")
    assert not stepper.compiled and "no C++ compiler" in stepper.compile_error and stepper.mode == "eager"
    torch.testing.assert_close(out.grad_x, ref.grad_x, rtol=0, atol=0)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory"), RuntimeError("shape mismatch in the step")])
def test_compiled_step_errors_that_are_not_compile_errors_are_raised(monkeypatch, error):
    """Only compile errors fall back to eager; an out-of-memory error or the step's own error is the caller's."""
    def compiled_then_failing(fn, **kwargs):
        def run(*args):
            raise error
        return run
    monkeypatch.setattr(torch, "compile", compiled_then_failing)
    net = _net()
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, 4, 3, torch.Generator().manual_seed(1), augment=False)
    stepper = Stepper(net, compile=True)
    with pytest.raises(type(error), match=str(error)):
        unroll(net, x, y, alpha, theta0, target, plan, "reverse", stepper=stepper)
    assert stepper.compiled and stepper.compile_error is None


def _dynamo_available():
    try:
        import torch._dynamo
        return torch._dynamo.is_dynamo_supported()
    except Exception:
        return False


needs_dynamo = pytest.mark.skipif(not _dynamo_available(), reason="torch.compile (dynamo) unsupported on this platform")


@needs_dynamo
@pytest.mark.parametrize("augmented", [False, True])
def test_compiled_step_functions_have_no_graph_breaks(augmented):
    import torch._dynamo
    net = _net()
    x, y, alpha, theta0, _ = _problem(net, torch.float32)
    index, mask = augment_tensors(Augment(), 7, N_SYN, *SHAPE[1:]) if augmented else (None, None)
    step, reverse, grad_and_loss = unroll_mod._compilable_step_functions(net)
    for fn, args in ((step, (theta0, x, y, alpha, index, mask)), (reverse, (theta0, x, y, index, mask, theta0)),
                     (grad_and_loss, (theta0, x, y, index, mask))):
        torch._dynamo.reset()
        explained = torch._dynamo.explain(fn)(*args)
        assert explained.graph_break_count == 0, explained.break_reasons
        assert explained.graph_count == 1


@needs_dynamo
def test_compiled_reverse_equals_naive():
    """Inductor-compiled per-step functions, float64, minibatches and augmentation (one compilation, ~20 s)."""
    net = _net(depth=1)
    x, y, alpha, theta0, target = _problem(net)
    plan = make_plan(N_SYN, 4, 5, torch.Generator().manual_seed(3), augment=True)
    stepper = Stepper(net, compile=True)
    out = unroll(net, x, y, alpha, theta0, target, plan, "reverse", Augment(), stepper)
    assert stepper.compiled, f"torch.compile failed on a platform that supports it: {stepper.compile_error}"
    ref = unroll(net, x, y, alpha, theta0, target, plan, "naive", Augment())
    assert _rel(out.grad_x, ref.grad_x) <= EXACT and _rel(out.grad_alpha, ref.grad_alpha) <= EXACT
