"""Drop-in call-compatible front ends: :mod:`ddfad_fast.compat.librosa` (``import ddfad_fast.compat.librosa
as librosa``)."""
