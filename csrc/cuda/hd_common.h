// Shared by the CUDA kernels and by the CPU test harness (csrc/cuda/host/harness.cc, compiled with g++):
// a qualifier macro, a complex pair, block-wide barriers and the few math functions both sides need.
//
// Kernel bodies in fd_mfcc_math.h / griffin_lim_math.h are written as functions of (block index,
// thread index, thread count, shared memory, barrier). A __global__ kernel calls them with its
// blockIdx / threadIdx and CtaSync (__syncthreads); the harness calls the very same functions with
// host threads and a std::barrier, so the index arithmetic and the phase structure run in CI.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define DDFAD_HD __host__ __device__ __forceinline__
#define DDFAD_UNROLL _Pragma("unroll")
#else
#define DDFAD_HD inline
#define DDFAD_UNROLL
#endif

namespace ddfad {

// (re, im) with the alignment of float2 / double2, so device loads and stores are one 8 / 16-byte access.
template <typename S>
struct alignas(2 * sizeof(S)) Cplx {
  S re;
  S im;
};

template <typename S>
DDFAD_HD Cplx<S> make_cplx(S re, S im) {
  Cplx<S> z;
  z.re = re;
  z.im = im;
  return z;
}

template <typename S>
DDFAD_HD Cplx<S> operator+(Cplx<S> a, Cplx<S> b) { return make_cplx<S>(a.re + b.re, a.im + b.im); }
template <typename S>
DDFAD_HD Cplx<S> operator-(Cplx<S> a, Cplx<S> b) { return make_cplx<S>(a.re - b.re, a.im - b.im); }
template <typename S>
DDFAD_HD Cplx<S> cmul(Cplx<S> a, Cplx<S> b) {
  return make_cplx<S>(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
}
template <typename S>
DDFAD_HD Cplx<S> conj(Cplx<S> a) { return make_cplx<S>(a.re, -a.im); }
template <typename S>
DDFAD_HD Cplx<S> scale(Cplx<S> a, S s) { return make_cplx<S>(a.re * s, a.im * s); }

// IEEE-rounded square root (nvcc without -use_fast_math) and log10 on both sides.
DDFAD_HD float hd_sqrt(float x) { return sqrtf(x); }
DDFAD_HD double hd_sqrt(double x) { return sqrt(x); }
DDFAD_HD float hd_log10(float x) { return log10f(x); }
template <typename T>
DDFAD_HD T hd_min(T a, T b) { return a < b ? a : b; }
template <typename T>
DDFAD_HD T hd_max(T a, T b) { return a > b ? a : b; }

// Block-wide barrier of a CUDA kernel (a no-op when a host caller runs a body with one thread).
struct CtaSync {
  DDFAD_HD void operator()() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
};

// max over a block: every thread passes its value, every thread gets the maximum.
// `red` is shared scratch of `nth` floats; ends with a barrier so `red` may be reused afterwards.
template <class Sync>
DDFAD_HD float block_max(float value, float* red, int tid, int nth, const Sync& sync) {
  red[tid] = value;
  sync();
  for (int step = 1; step < nth; step *= 2) {
    if (tid % (2 * step) == 0 && tid + step < nth) red[tid] = hd_max(red[tid], red[tid + step]);
    sync();
  }
  const float out = red[0];
  sync();
  return out;
}

}  // namespace ddfad
