"""Rows of a feature store read on demand: :class:`StoredFeatures` (what training gets for features left on
disk), and :func:`in_memory`, :func:`features_on` and :func:`first_channels`, which take features either as a
tensor or as such a view. The store itself is :class:`ddfad_fast.data.store.FeatureStore`."""
from __future__ import annotations

from typing import Iterator, Optional, Union

import torch
from torch import Tensor

from ..errors import ParameterError


class StoredFeatures:
    """Rows of a store (:class:`~ddfad_fast.data.store.FeatureStore`): FD-MFCC clips (N, C, n_mfcc, T) float32
    left on disk and read only when asked for.

    It is not a tensor, and offers no tensor methods. What it offers, all that training reads:

    * :attr:`shape` (N, C, n_mfcc, T), :attr:`dtype` (float32: what every read returns), :attr:`device`
      (where reads land) and ``len(x)`` (N);
    * :meth:`rows` (also ``x[index]``): the clips ``index`` (an int, a slice, an index tensor of any shape
      or a boolean mask) read into a tensor, standardised with ``norm`` when set, on :attr:`device`;
    * :meth:`chunks` and :meth:`materialize`: every clip, ``batch_size`` at a time or in one tensor;
    * views that read nothing: :meth:`subset` (some rows), :meth:`standardized_by` (a
      :class:`~ddfad_fast.data.split.FeatureNorm`), :meth:`first_channels` (the first ``k`` channels) and
      :meth:`to_device` (reads land on another device).

    :func:`in_memory`, :func:`features_on` and :func:`first_channels` take either a tensor or a view.
    """

    dtype = torch.float32

    def __init__(self, store, rows: Tensor, norm=None, device: Union[str, torch.device] = "cpu",
                 channels: Optional[int] = None) -> None:
        self.store, self.rows_index, self.norm = store, rows.long().cpu(), norm
        self.device, self.channels = torch.device(device), channels

    def _like(self, **changes) -> "StoredFeatures":
        fields = {"rows": self.rows_index, "norm": self.norm, "device": self.device, "channels": self.channels}
        fields.update(changes)
        return StoredFeatures(self.store, **fields)

    @property
    def shape(self) -> torch.Size:
        """(N, C, n_mfcc, T): the clips of this view and the size of one."""
        c, f, t = self.store.clip_shape
        return torch.Size((len(self.rows_index), self.channels or c, f, t))

    def __len__(self) -> int:
        return len(self.rows_index)

    # -- views (nothing is read)
    def subset(self, index) -> "StoredFeatures":
        """The view of the rows ``index`` (index tensor, boolean mask or slice) of this one."""
        return self._like(rows=self.rows_index[index])

    def standardized_by(self, norm) -> "StoredFeatures":
        """The view whose reads are standardised with ``norm``. Raises ParameterError if it already is."""
        if self.norm is not None:
            raise ParameterError("these stored features are already standardised")
        return self._like(norm=norm)

    def first_channels(self, k: int) -> "StoredFeatures":
        """The view of the first ``k`` channels (k >= 1) of every clip."""
        if k < 1:
            raise ParameterError(f"need at least one channel, got {k}")
        return self._like(channels=min(k, self.shape[1]))

    def to_device(self, device: Union[str, torch.device]) -> "StoredFeatures":
        """The view whose reads land on ``device`` (the store stays where it is)."""
        return self._like(device=torch.device(device))

    # -- reading
    def rows(self, index) -> Tensor:
        """The clips ``index`` read into a float32 tensor on :attr:`device`: an int gives (C, n_mfcc, T), a
        slice, mask or index tensor of shape S gives (*S, C, n_mfcc, T)."""
        if isinstance(index, tuple):
            raise ParameterError(f"stored features are read by rows (x.rows(index)), not x[{index}]; "
                                 "x.first_channels(k) keeps the first k channels")
        if isinstance(index, int):
            return self._read(self.rows_index[index].reshape(1))[0]
        return self._read(self.rows_index[index.cpu() if isinstance(index, Tensor) else index])

    __getitem__ = rows

    def _read(self, rows: Tensor) -> Tensor:
        x = torch.from_numpy(self.store.gather(rows.reshape(-1).numpy()))
        if self.norm is not None:
            x = self.norm.apply(x)
        if self.channels is not None:
            x = x[:, :self.channels].contiguous()
        return x.reshape(tuple(rows.shape) + tuple(x.shape[1:])).to(self.device)

    def chunks(self, batch_size: int = 1024) -> Iterator[Tensor]:
        """The clips in order, ``batch_size`` at a time."""
        for i in range(0, len(self.rows_index), batch_size):
            yield self._read(self.rows_index[i:i + batch_size])

    def materialize(self, batch_size: int = 1024) -> Tensor:
        """All of these clips in one tensor (memory for all of them, once: filled chunk by chunk)."""
        out = torch.empty(tuple(self.shape), dtype=torch.float32, device=self.device)
        for i in range(0, len(self.rows_index), batch_size):
            out[i:i + batch_size] = self._read(self.rows_index[i:i + batch_size])
        return out

    def __repr__(self) -> str:
        return (f"StoredFeatures(shape={tuple(self.shape)}, store={str(self.store.folder)!r}, "
                f"standardised={self.norm is not None}, device={self.device})")


def in_memory(x) -> Tensor:
    """Features as a tensor.

    Parameters
    ----------
    x : Tensor or StoredFeatures
        (N, ...) features.

    Returns
    -------
    Tensor
        A :class:`StoredFeatures` view read whole; a tensor as is.
    """
    return x.materialize() if isinstance(x, StoredFeatures) else x


Features = Union[Tensor, StoredFeatures]


def features_on(x: Features, device: Union[str, torch.device]) -> Features:
    """Features for training on a device.

    Parameters
    ----------
    x : Tensor or StoredFeatures
        (N, ...) features.
    device : str or torch.device
        The training device.

    Returns
    -------
    Tensor or StoredFeatures
        A tensor detached, as float32, on ``device``; a view whose reads land on ``device`` (nothing is read).
    """
    if isinstance(x, StoredFeatures):
        return x.to_device(device)
    return x.detach().float().to(device)


def first_channels(x: Features, k: int) -> Features:
    """The first channels of features (e.g. MFCC only, or MFCC and delta).

    Parameters
    ----------
    x : Tensor or StoredFeatures
        (N, C, n_mfcc, T) features.
    k : int
        Channels to keep, 1 <= k <= C.

    Returns
    -------
    Tensor or StoredFeatures
        (N, k, n_mfcc, T): a contiguous tensor, or a view of the store.
    """
    return x.first_channels(k) if isinstance(x, StoredFeatures) else x[:, :k].contiguous()
