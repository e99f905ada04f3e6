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

// exp(i pi x) as (cos, sin): float64 sincospi on the device, sin / cos of pi x on the host, rounded to the
// scalar type once (x = 2k/N is exact for power-of-two N). The FFT twiddles are computed with it where a kernel needs
// them, so no twiddle table travels with the launch.
DDFAD_HD Cplx<float> exp_i_pi(float x) {
  Cplx<float> z;
#if defined(__CUDA_ARCH__)
  double s, c;                                       // in float64, rounded once: the float32 table's values
  sincospi(static_cast<double>(x), &s, &c);
  z.re = static_cast<float>(c);
  z.im = static_cast<float>(s);
#else
  const double a = 3.14159265358979323846 * static_cast<double>(x);
  z.re = static_cast<float>(cos(a));
  z.im = static_cast<float>(sin(a));
#endif
  return z;
}
DDFAD_HD Cplx<double> exp_i_pi(double x) {
  Cplx<double> z;
#if defined(__CUDA_ARCH__)
  sincospi(x, &z.im, &z.re);
#else
  const double a = 3.14159265358979323846 * x;
  z.re = cos(a);
  z.im = sin(a);
#endif
  return z;
}

// Four floats with 16-byte alignment: one 128-bit load or store on the device.
struct alignas(16) F4 {
  float x, y, z, w;
};
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

// Division of 0 <= n < 2^31 by a divisor 1 <= d < 2^31 fixed at launch: a multiply-high, an add and shifts
// (Hacker's Delight 10-8) instead of the ~20-instruction sequence of a run-time integer division.
struct FastDiv {
  uint32_t d, m;
  int l;                                              // ceil(log2 d)
};

inline FastDiv make_fast_div(int64_t d) {
  FastDiv f;
  f.d = static_cast<uint32_t>(d);
  f.l = 0;
  while ((uint64_t{1} << f.l) < f.d) ++f.l;
  f.m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << f.l) - f.d)) / f.d + 1);
  return f;
}

DDFAD_HD int fast_div(int n, const FastDiv& f) {
  if (f.l == 0) return n;                             // d = 1
  const uint32_t u = static_cast<uint32_t>(n);
#if defined(__CUDA_ARCH__)
  const uint32_t t = __umulhi(u, f.m);
#else
  const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(u) * f.m) >> 32);
#endif
  return static_cast<int>((t + ((u - t) >> 1)) >> (f.l - 1));
}

// Execution context of the kernel bodies that use warp-level operations (fd_mfcc_clip.h): thread index and
// count, block and warp barriers, and shuffles over the whole warp (every lane of a warp calls them together).
// The device version below; the CPU harness passes one of host threads with real barriers and an exchange
// buffer per warp, so that the shuffle patterns run in CI.
struct CtaCtx {
  int tid, nth;
  DDFAD_HD void sync() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
  DDFAD_HD void warp_sync() const {
#if defined(__CUDA_ARCH__)
    __syncwarp();
#endif
  }
  DDFAD_HD float shfl_xor(float v, int mask) const {
#if defined(__CUDA_ARCH__)
    return __shfl_xor_sync(0xffffffffu, v, mask);
#else
    (void)mask;
    return v;
#endif
  }
  DDFAD_HD Cplx<float> shfl_xor(Cplx<float> v, int mask) const {
    return make_cplx<float>(shfl_xor(v.re, mask), shfl_xor(v.im, mask));
  }
  DDFAD_HD float shfl(float v, int src) const {
#if defined(__CUDA_ARCH__)
    return __shfl_sync(0xffffffffu, v, src);
#else
    (void)src;
    return v;
#endif
  }
  DDFAD_HD Cplx<float> shfl(Cplx<float> v, int src) const { return make_cplx<float>(shfl(v.re, src), shfl(v.im, src)); }
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
