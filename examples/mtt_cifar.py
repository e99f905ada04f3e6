"""MTT on CIFAR-shaped images with ddfad_fast.train.mtt: the distillation loop of MTT's reference code, with its
student unroll replaced by one call that needs the memory of one step, whatever the number of steps.

In MTT's reference ``distill.py`` the inner loop is

    student_params = [torch.cat([p.reshape(-1) for p in starting_params], 0).requires_grad_(True)]
    for step in range(syn_steps):
        indices = ...
        x, y = image_syn[indices], label_syn[indices]
        out = student_net(x, flat_param=student_params[-1])
        ce_loss = criterion(out, y)
        grad = torch.autograd.grad(ce_loss, student_params[-1], create_graph=True)[0]
        student_params.append(student_params[-1] - syn_lr * grad)
    param_loss = torch.nn.functional.mse_loss(student_params[-1], target_params, reduction="sum")
    param_dist = torch.nn.functional.mse_loss(starting_params, target_params, reduction="sum")
    grand_loss = param_loss / param_dist
    optimizer_img.zero_grad(); optimizer_lr.zero_grad()
    grand_loss.backward()                                    # through the graph of all syn_steps steps
    optimizer_img.step(); optimizer_lr.step()

and with ddfad_fast.train.mtt it is (``net = mtt.ModuleNet(model)`` once, ``model`` any nn.Module):

    result = mtt.match(net, image_syn, label_syn, syn_lr, starting_params, target_params,
                       steps=syn_steps, batch=batch_syn, generator=gen)
    image_syn.grad, syn_lr.grad = result.grad_x, result.grad_alpha
    optimizer_img.step(); optimizer_lr.step()

The gradient is the same (exact reverse mode, tested against the full graph in float64). Random images stand
in for CIFAR-10 (no download): a smooth random pattern per class plus noise. The script trains a few
experts, distils ``--ipc`` images per class and compares a ConvNet trained on them with one trained on as many
random real images. Usage:

    python examples/mtt_cifar.py [--ipc 10] [--iterations 30] [--syn-steps 20] [--width 32] [--threads N]
"""
from __future__ import annotations

import argparse
import time
from typing import List, Optional

import torch
import torch.nn.functional as F

from ddfad_fast.train import mtt


def make_data(classes: int, per_class: int, gen: torch.Generator, size: int = 32):
    """CIFAR-shaped (N, 3, size, size) images: a smooth random pattern per class plus noise; labels (N,)."""
    patterns = F.interpolate(torch.randn(classes, 3, 4, 4, generator=gen), size=(size, size), mode="bilinear",
                             align_corners=False)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return patterns[labels] + 1.5 * torch.randn(len(labels), 3, size, size, generator=gen), labels


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, gen: torch.Generator,
          batch: int = 64, snapshots: Optional[List[torch.Tensor]] = None) -> torch.nn.Module:
    """Plain SGD (the experts' and the evaluation's training); appends the flat parameters after every epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(batch):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        if snapshots is not None:
            snapshots.append(torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()]))
    return model


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", type=int, default=10, help="synthetic images per class")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--syn-steps", type=int, default=20, help="student steps per iteration (N)")
    parser.add_argument("--expert-epochs", type=int, default=2, help="M: match the expert M epochs ahead")
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each expert")
    parser.add_argument("--width", type=int, default=32, help="ConvNet width (MTT: 128)")
    parser.add_argument("--real-per-class", type=int, default=100)
    parser.add_argument("--lr-img", type=float, default=100.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    classes, gen = 10, torch.Generator().manual_seed(0)
    x_real, y_real = make_data(classes, args.real_per_class, gen)
    x_test, y_test = make_data(classes, 50, torch.Generator().manual_seed(1))
    build = lambda: mtt.convnet(3, classes, args.width, depth=3, image_size=32)      # noqa: E731

    # experts: flat parameters at every epoch (MTT's buffer.py)
    trajectories = []
    for e in range(args.experts):
        torch.manual_seed(100 + e)
        model = build()
        snaps = [torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])]
        train(model, x_real, y_real, args.epochs, 0.01, gen, snapshots=snaps)
        trajectories.append(snaps)

    # distillation (MTT's distill.py): synthetic images from real ones, a learnable student step size
    net = mtt.ModuleNet(build())
    pick = torch.cat([torch.nonzero(y_real == c).flatten()[:args.ipc] for c in range(classes)])
    image_syn = x_real[pick].clone().requires_grad_(True)
    label_syn = y_real[pick].clone()
    syn_lr = torch.tensor(0.01, requires_grad=True)
    optimizer_img = torch.optim.SGD([image_syn], lr=args.lr_img, momentum=0.5)
    optimizer_lr = torch.optim.SGD([syn_lr], lr=1e-5, momentum=0.5)
    stepper = mtt.Stepper(net)
    losses, start_time = [], time.perf_counter()
    for it in range(args.iterations):
        expert = trajectories[int(torch.randint(len(trajectories), (1,), generator=gen))]
        start_epoch = int(torch.randint(0, args.epochs - args.expert_epochs + 1, (1,), generator=gen))
        result = mtt.match(net, image_syn, label_syn, syn_lr, expert[start_epoch],
                           expert[start_epoch + args.expert_epochs], steps=args.syn_steps, generator=gen,
                           stepper=stepper)
        optimizer_img.zero_grad()
        optimizer_lr.zero_grad()
        image_syn.grad, syn_lr.grad = result.grad_x, result.grad_alpha
        optimizer_img.step()
        optimizer_lr.step()
        losses.append(float(result.loss))
        if it % max(1, args.iterations // 10) == 0 or it == args.iterations - 1:
            print(f"iteration {it:4d}  matching loss {losses[-1]:.4f}  syn_lr {float(syn_lr.detach()):.5f}", flush=True)
    seconds = time.perf_counter() - start_time

    # evaluation: a fresh ConvNet on the distilled images vs on as many random real ones
    results = {}
    random_pick = torch.randperm(len(y_real), generator=gen)[:len(pick)]
    for name, xs, ys in (("distilled", image_syn.detach(), label_syn), ("random real", x_real[random_pick],
                                                                          y_real[random_pick])):
        torch.manual_seed(7)
        model = train(build(), xs, ys, epochs=300 // max(1, len(ys) // 64 + 1), lr=0.01, gen=gen, batch=64)
        results[name] = accuracy(model, x_test, y_test)
        print(f"{name:12s}: test accuracy {100 * results[name]:.1f} % ({len(ys)} images)")
    print(f"{args.iterations} iterations of {args.syn_steps} steps in {seconds:.1f} s")
    return {"losses": losses, "accuracy": results, "seconds": seconds, "syn_lr": float(syn_lr.detach())}


if __name__ == "__main__":
    main()
