// Real FFT of one frame by a group of lanes of a warp, in registers: no shared memory and no block barrier.
// Shared by the per-clip FD-MFCC kernel (fd_mfcc_clip.h) and the CPU harness (see hd_common.h: the harness
// runs the same code with host threads, its shuffles through an exchange buffer and a real barrier).
//
// N = 2^LOG2N real points through the complex FFT of M = N/2 points of z[n] = x[2n] + i x[2n+1]
// (rfft_unpack of fft_math.h). The M points are spread over P = M / R lanes, R = 2^LOG2R per lane:
// lane j of the group holds z[j + P r], r < R. Four-step FFT, M = R x P:
//   1. an R-point DFT in registers over r (dft_registers),
//   2. twiddle exp(-2 pi i j k1 / M),
//   3. for each k1, a P-point DFT across the group's lanes: log2(P) radix-2 decimation-in-frequency stages,
//      each one exchange with lane j ^ h (a shuffle),
// after which lane j holds bin k1 + R * bitrev(j) in register k1. The unpacking to the real spectrum needs
// Z[(M - k) mod M]: for k1 >= 1 that is register R - k1 of lane j ^ (P - 1), for k1 = 0 register 0 of the lane
// whose bit-reversed index is (P - bitrev(j)) mod P: R shuffles. Every twiddle is computed once per thread.
#pragma once

#include "fft_math.h"
#include "hd_common.h"

namespace ddfad {

// The low `bits` bits of v reversed (bits <= 5 here).
DDFAD_HD int bit_reverse(int v, int bits) {
#if defined(__CUDA_ARCH__)
  return bits == 0 ? 0 : static_cast<int>(__brev(static_cast<unsigned>(v)) >> (32 - bits));
#else
  int out = 0;
  for (int i = 0; i < bits; ++i) out |= ((v >> i) & 1) << (bits - 1 - i);
  return out;
#endif
}

template <int LOG2N, int LOG2R>
struct WarpRfft {
  static constexpr int N = 1 << LOG2N;
  static constexpr int LOG2M = LOG2N - 1;
  static constexpr int M = 1 << LOG2M;
  static constexpr int R = 1 << LOG2R;                 // points per lane
  static constexpr int LOG2P = LOG2M - LOG2R;
  static constexpr int P = 1 << LOG2P;                 // lanes per frame
  static constexpr int G = 32 / P;                     // frames per warp
  static constexpr int F = M + 1;                      // bins of the real spectrum
  static_assert(LOG2R >= 1 && LOG2R <= 4, "1 to 4 radix-2 stages in registers (dft_registers)");
  static_assert(LOG2P >= 0 && LOG2P <= 5, "a frame's lanes must lie in one warp");

  Cplx<float> tw_step[R];                              // exp(-2 pi i j k1 / M)
  Cplx<float> tw_stage[LOG2P > 0 ? LOG2P : 1];         // stage of span h = 2^s: exp(-2 pi i (j mod h) / 2h)
  Cplx<float> tw_unpack[R];                            // exp(-2 pi i k / N) of the lane's bins k
  int j;                                               // lane within the frame's group
  int k2;                                              // bitrev(j): the lane's bins are k1 + R k2
  int src0;                                            // lane (of the warp) holding Z[(M - R k2) mod M]

  DDFAD_HD void init(int lane) {
    j = lane & (P - 1);
    k2 = bit_reverse(j, LOG2P);
    DDFAD_UNROLL
    for (int k1 = 0; k1 < R; ++k1) {
      tw_step[k1] = exp_i_pi(-2.0f * static_cast<float>(j * k1) / static_cast<float>(M));
      tw_unpack[k1] = exp_i_pi(-2.0f * static_cast<float>(k1 + R * k2) / static_cast<float>(N));
    }
    DDFAD_UNROLL
    for (int s = 0; s < LOG2P; ++s) {
      const int h = 1 << s;
      tw_stage[s] = exp_i_pi(-static_cast<float>(j & (h - 1)) / static_cast<float>(h));
    }
    src0 = (lane & ~(P - 1)) + bit_reverse((P - k2) & (P - 1), LOG2P);
  }

  // In place: a[r] = z[j + P r] in, a[k1] = Z[k1 + R k2] out. Every lane of the warp calls it together.
  template <class Ctx>
  DDFAD_HD void forward(Cplx<float> (&a)[R], const Ctx& ctx) const {
    dft_registers<float, R>(a, false);
    DDFAD_UNROLL
    for (int k1 = 1; k1 < R; ++k1) a[k1] = cmul(a[k1], tw_step[k1]);
    DDFAD_UNROLL
    for (int s = LOG2P - 1; s >= 0; --s) {
      const int h = 1 << s;
      const bool upper = (j & h) != 0;
      DDFAD_UNROLL
      for (int k1 = 0; k1 < R; ++k1) {
        const Cplx<float> other = ctx.shfl_xor(a[k1], h);
        a[k1] = upper ? cmul(other - a[k1], tw_stage[s]) : a[k1] + other;
      }
    }
  }

  // |X[k]|^2 of the lane's bins k = k1 + R k2 from forward()'s output, and (meaningful on lane j = 0) the
  // Nyquist bin's. Every lane of the warp calls it together.
  template <class Ctx>
  DDFAD_HD void power(const Cplx<float> (&a)[R], const Ctx& ctx, float (&pw)[R], float& nyquist) const {
    Cplx<float> partner[R];
    partner[0] = ctx.shfl(a[0], src0);
    DDFAD_UNROLL
    for (int k1 = 1; k1 < R; ++k1) partner[k1] = ctx.shfl_xor(a[R - k1], P - 1);
    DDFAD_UNROLL
    for (int k1 = 0; k1 < R; ++k1) {
      const Cplx<float> X = rfft_unpack(a[k1], partner[k1], tw_unpack[k1]);
      pw[k1] = X.re * X.re + X.im * X.im;
    }
    const float last = a[0].re - a[0].im;              // X[M] = Re Z[0] - Im Z[0]
    nyquist = last * last;
  }

  // Where bin k (0..M) lives in a frame's power buffer of R * (P + 1) floats: row k mod R, column k / R.
  // The lanes write one row per register without bank conflicts; the Nyquist bin takes row 0's spare column.
  DDFAD_HD static int slot(int k) { return (k & (R - 1)) * (P + 1) + (k >> LOG2R); }
};

}  // namespace ddfad
