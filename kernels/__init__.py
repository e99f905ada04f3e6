"""Triton kernels (installed as ``ddfad_fast.kernels``). Importing this package never needs triton."""
