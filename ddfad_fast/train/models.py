"""Classifiers run functionally on ONE flat parameter vector (what MTT needs).

A :class:`FunctionalNet` holds no tensors: ``forward(flat_params, x)`` slices ``flat_params`` (P,)
into views, so the logits are differentiable twice w.r.t. both the parameters and the input, in
float32 or float64. There are no BatchNorm running statistics and no dropout: a forward pass is a
pure function, which makes student unrolls replayable.

Architectures (inputs (B, 3, n_mfcc, T), e.g. (B, 3, 20, 101)):

* ``"convnet"``: the MTT ConvNet, ``depth`` x [conv3x3(width) -> instance norm -> ReLU -> avgpool 2x2]
  -> linear.
* ``"vgg"``: ``depth`` stages of two [conv3x3 -> norm -> ReLU] then maxpool 2x2; stage ``i`` has
  ``width * 2**min(i, 1)`` channels -> linear.
* ``"resnet"``: conv3x3 stem, ``depth`` basic residual blocks (the blocks after the first halve the
  resolution with stride 2 and double the channels once), global average pool -> linear.

Instance norm is GroupNorm(C, C) with affine parameters: per sample and channel over (H, W).
Pooling never shrinks a side below 1 (a side of length 1 is left as is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ModelConfig
from ..errors import ParameterError

MODEL_NAMES = ("convnet", "vgg", "resnet")
_EPS = 1e-5


@dataclass(frozen=True)
class _ParamSpec:
    name: str
    shape: Tuple[int, ...]
    init: str          # "uniform" (bound 1/sqrt(fan_in)), "ones", "zeros"
    fan_in: int = 1

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape))


class _Builder:
    """Collects parameter specs while the architecture is laid out."""

    def __init__(self) -> None:
        self.specs: List[_ParamSpec] = []

    def conv(self, name: str, c_in: int, c_out: int, k: int, bias: bool = True) -> None:
        fan_in = c_in * k * k
        self.specs.append(_ParamSpec(f"{name}.weight", (c_out, c_in, k, k), "uniform", fan_in))
        if bias:
            self.specs.append(_ParamSpec(f"{name}.bias", (c_out,), "uniform", fan_in))

    def norm(self, name: str, channels: int) -> None:
        self.specs.append(_ParamSpec(f"{name}.weight", (channels,), "ones"))
        self.specs.append(_ParamSpec(f"{name}.bias", (channels,), "zeros"))

    def linear(self, name: str, n_in: int, n_out: int) -> None:
        self.specs.append(_ParamSpec(f"{name}.weight", (n_out, n_in), "uniform", n_in))
        self.specs.append(_ParamSpec(f"{name}.bias", (n_out,), "uniform", n_in))


def _pool_kernel(h: int, w: int) -> Tuple[int, int]:
    return (2 if h >= 2 else 1, 2 if w >= 2 else 1)


def _down(h: int, w: int) -> Tuple[int, int]:
    kh, kw = _pool_kernel(h, w)
    return h // kh, w // kw


class FunctionalNet:
    """A classifier evaluated on a flat parameter vector.

    Attributes: ``num_params`` (P), ``in_shape`` (3, n_mfcc, T), ``num_classes``, ``config``.
    """

    def __init__(self, config: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int,
                 specs: List[_ParamSpec], body: Callable[["FunctionalNet", Dict[str, Tensor], Tensor], Tensor]) -> None:
        self.config = config
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self._specs = specs
        self._body = body
        self.num_params = sum(s.numel for s in specs)

    def init_params(self, generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Fresh parameters (P,): conv/linear uniform in +-1/sqrt(fan_in) (PyTorch's default), norm 1/0."""
        chunks = []
        for spec in self._specs:
            if spec.init == "uniform":
                bound = 1.0 / math.sqrt(spec.fan_in)
                chunks.append((torch.rand(spec.numel, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
            elif spec.init == "ones":
                chunks.append(torch.ones(spec.numel, dtype=torch.float64))
            else:
                chunks.append(torch.zeros(spec.numel, dtype=torch.float64))
        return torch.cat(chunks).to(dtype)

    def unflatten(self, flat_params: Tensor) -> Dict[str, Tensor]:
        """Views of ``flat_params`` (P,) by parameter name, in their shapes."""
        if flat_params.dim() != 1 or flat_params.numel() != self.num_params:
            raise ParameterError(f"flat_params must have shape ({self.num_params},), got {tuple(flat_params.shape)}")
        out, offset = {}, 0
        for spec in self._specs:
            out[spec.name] = flat_params[offset:offset + spec.numel].view(spec.shape)
            offset += spec.numel
        return out

    def embed(self, flat_params: Tensor, x: Tensor) -> Tensor:
        """The features the final linear layer sees, (B, D), of inputs ``x`` ``(B, *in_shape)``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ParameterError(f"x must have shape (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        return self._body(self, self.unflatten(flat_params), x)

    def forward(self, flat_params: Tensor, x: Tensor) -> Tensor:
        """Logits (B, num_classes) of inputs ``x`` ``(B, *in_shape)`` under ``flat_params`` (P,)."""
        p = self.unflatten(flat_params)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ParameterError(f"x must have shape (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        return F.linear(self._body(self, p, x), p["fc.weight"], p["fc.bias"])

    __call__ = forward

    def _norm(self, p: Dict[str, Tensor], name: str, h: Tensor) -> Tensor:
        if self.config.norm == "none":
            return h
        c = h.shape[1]
        return F.group_norm(h, c, p[f"{name}.weight"], p[f"{name}.bias"], eps=_EPS)

    def _act(self, h: Tensor) -> Tensor:
        return F.relu(h)


def _check(config: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int) -> None:
    if config.name not in MODEL_NAMES:
        raise ParameterError(f"model name must be one of {MODEL_NAMES}, got {config.name!r}")
    if config.width < 1 or config.depth < 1:
        raise ParameterError(f"model width and depth must be >= 1, got width={config.width}, depth={config.depth}")
    if config.norm not in ("instancenorm", "none"):
        raise ParameterError(f"model norm must be 'instancenorm' or 'none', got {config.norm!r}")
    if config.activation != "relu":
        raise ParameterError(f"model activation must be 'relu', got {config.activation!r}")
    if config.pooling not in ("avgpool", "maxpool"):
        raise ParameterError(f"model pooling must be 'avgpool' or 'maxpool', got {config.pooling!r}")
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ParameterError(f"in_shape must be (channels, height, width) with positive sides, got {in_shape}")
    if num_classes < 2:
        raise ParameterError(f"num_classes must be >= 2, got {num_classes}")


def _pool(config: ModelConfig, h: Tensor, kind: Optional[str] = None) -> Tensor:
    k = _pool_kernel(h.shape[2], h.shape[3])
    if k == (1, 1):
        return h
    if (kind or config.pooling) == "maxpool":
        return F.max_pool2d(h, k)
    return F.avg_pool2d(h, k)


def _convnet(config: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int) -> FunctionalNet:
    b = _Builder()
    c, h, w = in_shape
    for i in range(config.depth):
        b.conv(f"conv{i}", c, config.width, 3)
        b.norm(f"norm{i}", config.width)
        c = config.width
        h, w = _down(h, w)
    b.linear("fc", c * h * w, num_classes)

    def body(net: FunctionalNet, p: Dict[str, Tensor], x: Tensor) -> Tensor:
        out = x
        for i in range(config.depth):
            out = F.conv2d(out, p[f"conv{i}.weight"], p[f"conv{i}.bias"], padding=1)
            out = _pool(config, net._act(net._norm(p, f"norm{i}", out)))
        return out.flatten(1)

    return FunctionalNet(config, in_shape, num_classes, b.specs, body)


def _vgg(config: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int) -> FunctionalNet:
    b = _Builder()
    c, h, w = in_shape
    widths = [config.width * 2 ** min(i, 1) for i in range(config.depth)]
    for i, cw in enumerate(widths):
        for j in range(2):
            b.conv(f"s{i}.conv{j}", c, cw, 3)
            b.norm(f"s{i}.norm{j}", cw)
            c = cw
        h, w = _down(h, w)
    b.linear("fc", c * h * w, num_classes)

    def body(net: FunctionalNet, p: Dict[str, Tensor], x: Tensor) -> Tensor:
        out = x
        for i in range(config.depth):
            for j in range(2):
                out = F.conv2d(out, p[f"s{i}.conv{j}.weight"], p[f"s{i}.conv{j}.bias"], padding=1)
                out = net._act(net._norm(p, f"s{i}.norm{j}", out))
            out = _pool(config, out, "maxpool")
        return out.flatten(1)

    return FunctionalNet(config, in_shape, num_classes, b.specs, body)


def _resnet(config: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int) -> FunctionalNet:
    b = _Builder()
    b.conv("stem", in_shape[0], config.width, 3, bias=False)
    b.norm("stem_norm", config.width)
    c = config.width
    blocks = []  # (c_in, c_out, stride)
    for i in range(config.depth):
        stride = 1 if i == 0 else 2
        c_out = config.width * (2 if i > 0 else 1)
        b.conv(f"b{i}.conv1", c, c_out, 3, bias=False)
        b.norm(f"b{i}.norm1", c_out)
        b.conv(f"b{i}.conv2", c_out, c_out, 3, bias=False)
        b.norm(f"b{i}.norm2", c_out)
        if stride != 1 or c != c_out:
            b.conv(f"b{i}.short", c, c_out, 1, bias=False)
            b.norm(f"b{i}.short_norm", c_out)
        blocks.append((c, c_out, stride))
        c = c_out
    b.linear("fc", c, num_classes)

    def body(net: FunctionalNet, p: Dict[str, Tensor], x: Tensor) -> Tensor:
        out = net._act(net._norm(p, "stem_norm", F.conv2d(x, p["stem.weight"], padding=1)))
        for i, (c_in, c_out, stride) in enumerate(blocks):
            y = F.conv2d(out, p[f"b{i}.conv1.weight"], stride=stride, padding=1)
            y = net._act(net._norm(p, f"b{i}.norm1", y))
            y = net._norm(p, f"b{i}.norm2", F.conv2d(y, p[f"b{i}.conv2.weight"], padding=1))
            if f"b{i}.short.weight" in p:
                out = net._norm(p, f"b{i}.short_norm", F.conv2d(out, p[f"b{i}.short.weight"], stride=stride))
            out = net._act(y + out)
        return out.mean(dim=(2, 3))

    return FunctionalNet(config, in_shape, num_classes, b.specs, body)


_BUILDERS = {"convnet": _convnet, "vgg": _vgg, "resnet": _resnet}


def build_model(config: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int) -> FunctionalNet:
    """The :class:`FunctionalNet` named by ``config.name`` for inputs (3, n_mfcc, T) and ``num_classes``."""
    in_shape = tuple(int(s) for s in in_shape)
    _check(config, in_shape, int(num_classes))
    return _BUILDERS[config.name](config, in_shape, int(num_classes))
