"""Build the optional extension ``ddfad_fast._C``.

* CPU sources (``csrc/cpu/*.cpp``) are always built, with OpenMP.
* CUDA sources (``csrc/cuda/*.cu`` plus their ``*.cpp`` bindings) are added when the installed torch
  has CUDA and a CUDA toolkit (nvcc) is found, or when ``DDFAD_FORCE_CUDA=1``.
* ``DDFAD_NO_CUDA=1`` builds the CPU sources only; ``DDFAD_NO_EXT=1`` skips the extension entirely; ``import ddfad_fast`` never needs it.
* ``DDFAD_REQUIRE_EXT=1`` (CI) makes a build that would skip the extension an error.

Install torch first, then ``pip install --no-build-isolation -e .``.
"""
import ctypes.util
import glob
import os
import platform
import sys

from setuptools import setup


def _extensions():
    required = os.environ.get("DDFAD_REQUIRE_EXT", "0") == "1"
    if os.environ.get("DDFAD_NO_EXT", "0") == "1":
        if required:
            sys.exit("ddfad_fast: DDFAD_REQUIRE_EXT=1 and DDFAD_NO_EXT=1 contradict each other")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:  # torch not installed yet: pure-python install
        if required:
            sys.exit(f"ddfad_fast: DDFAD_REQUIRE_EXT=1 but torch is not importable at build time ({exc}); "
                     "install torch first and build with --no-build-isolation")
        print("ddfad_fast: torch not importable at build time, skipping the extension", file=sys.stderr)
        return [], {}

    root = os.path.dirname(os.path.abspath(__file__))
    rel = lambda p: os.path.relpath(p, root)  # noqa: E731
    cpu_sources = sorted(rel(p) for p in glob.glob(os.path.join(root, "csrc", "cpu", "*.cpp")))
    cuda_sources = sorted(rel(p) for p in glob.glob(os.path.join(root, "csrc", "cuda", "*.cu")))
    cuda_sources += sorted(rel(p) for p in glob.glob(os.path.join(root, "csrc", "cuda", "*.cpp")))
    if not cpu_sources:
        return [], {}

    from torch.utils.cpp_extension import CUDA_HOME
    forced = os.environ.get("DDFAD_FORCE_CUDA", "0") == "1"
    with_cuda = bool(cuda_sources) and os.environ.get("DDFAD_NO_CUDA", "0") != "1" and (forced or (
        (torch.cuda.is_available() or torch.version.cuda is not None) and CUDA_HOME is not None))
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp", "-fno-math-errno"]  # C++20: the standard torch is built with
    if os.environ.get("DDFAD_PORTABLE", "0") != "1":
        cxx_flags.append("-march=native")
    define_macros = [("WITH_CUDA", None)] if with_cuda else []
    link_args = ["-fopenmp"]
    # glibc's vector math library (vectorised log in csrc/cpu/vecmath.h); without it the scalar log is used
    if sys.platform.startswith("linux") and platform.machine() == "x86_64" and ctypes.util.find_library("mvec"):
        link_args.append("-lmvec")
    else:
        define_macros.append(("DDFAD_NO_LIBMVEC", None))
    common = dict(
        name="ddfad_fast._C",
        include_dirs=[os.path.join(root, "csrc")],
        define_macros=define_macros,
        extra_link_args=link_args,
    )
    if with_cuda:
        ext = CUDAExtension(
            sources=cpu_sources + cuda_sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3",
                                                            "-gencode=arch=compute_90,code=sm_90",
                                                            "-gencode=arch=compute_80,code=sm_80"]},
            **common,
        )
    else:
        ext = CppExtension(sources=cpu_sources, extra_compile_args={"cxx": cxx_flags}, **common)
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
