"""Rows of a feature store read like a tensor: :class:`StoredFeatures` (what training gets for features left
on disk) and :func:`in_memory`. The store itself is :class:`ddfad_fast.data.store.FeatureStore`."""
from __future__ import annotations

from typing import Iterator, Optional, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import ParameterError


class StoredFeatures:
    """Rows of a store (:class:`~ddfad_fast.data.store.FeatureStore`) that read like a (N, 3, n_mfcc, T) float32
    tensor when indexed.

    Indexing with an int, a slice, an index tensor of any shape or a boolean mask returns a real tensor
    (standardised with ``norm`` when set, on ``device``) holding only those clips; :meth:`subset` returns
    another view. ``x[:, :k]`` keeps the first ``k`` channels. Training loops that draw batches by
    index read the store batch by batch.
    """

    def __init__(self, store, rows: Tensor, norm=None, device: Union[str, torch.device] = "cpu",
                 channels: Optional[int] = None) -> None:
        self.store, self.rows, self.norm = store, rows.long().cpu(), norm
        self.device, self.channels = torch.device(device), channels

    def _like(self, **changes) -> "StoredFeatures":
        fields = {"rows": self.rows, "norm": self.norm, "device": self.device, "channels": self.channels}
        fields.update(changes)
        return StoredFeatures(self.store, **fields)

    # -- tensor-like attributes
    @property
    def shape(self) -> torch.Size:
        c, f, t = self.store.clip_shape
        return torch.Size((len(self.rows), self.channels or c, f, t))

    dtype = torch.float32

    def dim(self) -> int:
        return 4

    def size(self, dim: Optional[int] = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device=None, dtype=None, **_) -> "StoredFeatures":
        if dtype is not None and dtype != torch.float32:
            raise ParameterError(f"stored features are float32; .to({dtype}) needs them in memory (materialize())")
        if isinstance(device, torch.dtype):
            return self.to(dtype=device)
        return self if device is None else self._like(device=torch.device(device))

    def cpu(self) -> "StoredFeatures":
        return self.to("cpu")

    def float(self) -> "StoredFeatures":
        return self

    def detach(self) -> "StoredFeatures":
        return self

    def contiguous(self) -> "StoredFeatures":
        return self

    # -- reading
    def subset(self, index) -> "StoredFeatures":
        """The view of the rows ``index`` (index tensor, boolean mask or slice) of this one."""
        return self._like(rows=self.rows[index])

    def standardized_by(self, norm) -> "StoredFeatures":
        if self.norm is not None:
            raise ParameterError("these stored features are already standardised")
        return self._like(norm=norm)

    def __getitem__(self, key) -> Tensor:
        if isinstance(key, tuple):
            if len(key) == 2 and key[0] == slice(None) and isinstance(key[1], slice) and key[1].start in (None, 0) \
                    and key[1].step in (None, 1):
                return self._like(channels=min(key[1].stop or 3, self.channels or 3))
            raise ParameterError(f"stored features support x[index] and x[:, :k], not x[{key}]")
        if isinstance(key, int):
            return self._read(self.rows[key].reshape(1))[0]
        rows = self.rows[key] if not isinstance(key, Tensor) else self.rows[key.cpu()]
        return self._read(rows)

    def _read(self, rows: Tensor) -> Tensor:
        x = torch.from_numpy(self.store.gather(rows.reshape(-1).numpy()))
        if self.norm is not None:
            x = self.norm.apply(x)
        if self.channels is not None:
            x = x[:, :self.channels].contiguous()
        return x.reshape(tuple(rows.shape) + tuple(x.shape[1:])).to(self.device)

    def chunks(self, batch_size: int = 1024) -> Iterator[Tensor]:
        """The clips in order, ``batch_size`` at a time."""
        for i in range(0, len(self.rows), batch_size):
            yield self._read(self.rows[i:i + batch_size])

    def materialize(self, batch_size: int = 1024) -> Tensor:
        """All of these clips in one tensor (memory for all of them, once: filled chunk by chunk)."""
        out = torch.empty(tuple(self.shape), dtype=torch.float32, device=self.device)
        for i in range(0, len(self.rows), batch_size):
            out[i:i + batch_size] = self._read(self.rows[i:i + batch_size])
        return out

    def __repr__(self) -> str:
        return (f"StoredFeatures(shape={tuple(self.shape)}, store={str(self.store.folder)!r}, "
                f"standardised={self.norm is not None}, device={self.device})")


def in_memory(x) -> Tensor:
    """``x`` as a tensor: a :class:`StoredFeatures` view is read whole, a tensor is returned as is."""
    return x.materialize() if isinstance(x, StoredFeatures) else x
