// FFTs of the fused CUDA kernels, shared with the CPU harness (see hd_common.h): real FFTs of N points
// through complex FFTs of M = N/2 points, computed in shared memory by in-place Stockham passes whose
// butterflies (up to 16 points) live in registers. Power-of-two sizes only.
#pragma once

#include "hd_common.h"

namespace ddfad {

// ---- real FFT of size N through a complex FFT of size M = N/2 ----------------------------------------
// Inverse: the half-size spectrum Z[k] = Xe[k] + i Xo[k] of z[n] = x[2n] + i x[2n+1], from X[k], X[M-k]
// and w = exp(-2 pi i k / N); an unnormalised inverse FFT of Z gives M * z. For k = 0 the caller passes
// X[0] and X[M], whose imaginary parts are ignored.
template <typename S>
DDFAD_HD Cplx<S> irfft_pack(Cplx<S> xk, Cplx<S> xmk, Cplx<S> w, bool dc) {
  if (dc) {
    xk.im = 0;
    xmk.im = 0;
  }
  const Cplx<S> even = scale(xk + conj(xmk), S(0.5));
  const Cplx<S> odd = cmul(scale(xk - conj(xmk), S(0.5)), conj(w));
  return make_cplx<S>(even.re - odd.im, even.im + odd.re);
}

// Forward: bin k (0..M) of the real FFT of x from Z = FFT_M(z) at k mod M and (M - k) mod M, and
// w = exp(-2 pi i k / N).
template <typename S>
DDFAD_HD Cplx<S> rfft_unpack(Cplx<S> zk, Cplx<S> zmk, Cplx<S> w) {
  const Cplx<S> even = scale(zk + conj(zmk), S(0.5));
  const Cplx<S> d = zk - conj(zmk);
  const Cplx<S> odd = make_cplx<S>(S(0.5) * d.im, S(-0.5) * d.re);      // d / (2i)
  return even + cmul(w, odd);
}

// exp(-2 pi i k / N) for 0 <= k < N from the table tw[k] = exp(-2 pi i k / N), k < N/2.
template <typename S>
DDFAD_HD Cplx<S> twiddle_at(const Cplx<S>* tw, int k, int half) {
  return k < half ? tw[k] : scale(tw[k - half], S(-1));
}

// ---- Stockham FFT: radix-R passes with the R points of each butterfly in registers ---------------------
constexpr int kMaxFftPasses = 12;                      // M <= 4096 with radix-2 passes at worst

// cos(2 pi k / 16) for any integer k: the twiddles of the in-register DFTs (R <= 16).
DDFAD_HD constexpr double cos_2pi_16(int k) {
  switch (k & 15) {
    case 0: return 1.0;
    case 1: case 15: return 0.92387953251128675613;
    case 2: case 14: return 0.70710678118654752440;
    case 3: case 13: return 0.38268343236508977173;
    case 4: case 12: return 0.0;
    case 5: case 11: return -0.38268343236508977173;
    case 6: case 10: return -0.70710678118654752440;
    case 7: case 9: return -0.92387953251128675613;
    default: return -1.0;
  }
}

// Reverse the low `bits` (<= 4) bits of k; straight-line, so it folds to a constant in unrolled loops
// (a loop here kept the register array it indexes in local memory).
DDFAD_HD constexpr int bit_reverse_const(int k, int bits) {
  return (bits >= 1 ? ((k >> 0) & 1) << (bits - 1) : 0) | (bits >= 2 ? ((k >> 1) & 1) << (bits - 2) : 0) |
         (bits >= 3 ? ((k >> 2) & 1) << (bits - 3) : 0) | (bits >= 4 ? ((k >> 3) & 1) << (bits - 4) : 0);
}

// ceil(log2 n) for n >= 1
DDFAD_HD int log2_ceil(int64_t n) {
  int bits = 0;
  while ((int64_t{1} << bits) < n) ++bits;
  return bits;
}

DDFAD_HD constexpr int log2_const(int n) {
  int bits = 0;
  while ((1 << bits) < n) ++bits;
  return bits;
}

// DFT of R = 2, 4, 8 or 16 points in registers (natural order in and out), sign -1 (+1 if inverse).
// Every loop has a constant trip count and is unrolled, so v stays in registers.
template <typename S, int R>
DDFAD_HD void dft_registers(Cplx<S> (&v)[R], bool inverse) {
  constexpr int kBits = log2_const(R);
  Cplx<S> u[R];
  DDFAD_UNROLL
  for (int i = 0; i < R; ++i) u[i] = v[bit_reverse_const(i, kBits)];
  DDFAD_UNROLL
  for (int s = 0; s < kBits; ++s) {                      // radix-2 stages, butterflies spanning 2h points
    DDFAD_UNROLL
    for (int b = 0; b < R / 2; ++b) {
      const int h = 1 << s;
      const int q = b & (h - 1);
      const int lo = ((b >> s) << (s + 1)) + q;
      const int e = q << (3 - s);                        // exp(-2 pi i q / 2h) = exp(-2 pi i e / 16)
      const S wr = static_cast<S>(cos_2pi_16(e));
      const S wi = static_cast<S>(cos_2pi_16(e - 4)) * (inverse ? S(1) : S(-1));   // -sin, or +sin if inverse
      const Cplx<S> t = cmul(u[lo + h], make_cplx<S>(wr, wi));
      u[lo + h] = u[lo] - t;
      u[lo] = u[lo] + t;
    }
  }
  DDFAD_UNROLL
  for (int i = 0; i < R; ++i) v[i] = u[i];
}

// One in-place Stockham radix-R pass over `count` sequences of M = 2^log2m points (stride M), after
// passes whose radices multiply to ns = 2^ns_log2. Butterfly j of a sequence reads x[j + r M/R], twiddles
// by exp(-+2 pi i r (j mod ns) / (ns R)), transforms, writes x[(j / ns) ns R + (j mod ns) + r ns]. Every
// read happens before the barrier and every write after it, so one buffer suffices; a block handles
// nth / (M/R) sequences per round (the schedule guarantees M/R <= nth).
template <typename S, int R, class Sync>
DDFAD_HD void stockham_pass(Cplx<S>* buf, int count, int log2m, int ns_log2, const Cplx<S>* tw, bool inverse,
                            int tid, int nth, const Sync& sync) {
  constexpr int kLog2R = log2_const(R);
  const int m = 1 << log2m;
  const int log2per = log2m - kLog2R;                    // butterflies per sequence: M / R
  const int per = 1 << log2per;
  const int group = nth >> log2per;                      // sequences per round
  const int shift = log2m + 1 - ns_log2 - kLog2R;        // twiddle table step: N / (ns R), N = 2M
  const int j = tid & (per - 1);
  const int k = j & ((1 << ns_log2) - 1);                // j mod ns
  const int dst = ((j >> ns_log2) << (ns_log2 + kLog2R)) + k;
  for (int s0 = 0; s0 < count; s0 += group) {
    const int seq = s0 + (tid >> log2per);
    const bool active = (tid >> log2per) < group && seq < count;
    Cplx<S>* x = buf + static_cast<int64_t>(seq) * m;
    Cplx<S> v[R];
    if (active) {
DDFAD_UNROLL
      for (int r = 0; r < R; ++r) v[r] = x[j + r * per];
    }
    sync();
    if (active) {
DDFAD_UNROLL
      for (int r = 1; r < R; ++r) {
        Cplx<S> w = twiddle_at(tw, (r * k) << shift, m);
        if (inverse) w.im = -w.im;
        v[r] = cmul(v[r], w);
      }
      dft_registers<S, R>(v, inverse);
DDFAD_UNROLL
      for (int r = 0; r < R; ++r) x[dst + (r << ns_log2)] = v[r];
    }
    sync();
  }
}

// Pass plan of an M = 2^log2m point FFT: radices of at most max_radix points first, the remainder last,
// as log2 radices packed 4 bits per pass (pass i: (plan >> 4i) & 15). Returns the number of passes, or
// -1 if a pass would have more butterflies per sequence than nth threads (or more than kMaxFftPasses).
DDFAD_HD int fft_schedule(int log2m, int max_radix, int nth, uint64_t* plan) {
  const int max_log2 = max_radix >= 16 ? 4 : max_radix >= 8 ? 3 : max_radix >= 4 ? 2 : 1;
  int n = 0;
  *plan = 0;
  for (int left = log2m; left > 0; ++n) {
    if (n == kMaxFftPasses) return -1;
    const int lr = hd_min(max_log2, left);
    if ((1 << (log2m - lr)) > nth) return -1;
    *plan |= static_cast<uint64_t>(lr) << (4 * n);
    left -= lr;
  }
  return n;
}

// Largest pass (log2 points) of a plan: the kernels are instantiated per largest pass, since registers
// are allocated for the largest in-register DFT a kernel contains.
DDFAD_HD int fft_plan_max_log2(uint64_t plan, int n_pass) {
  int out = 1;
  for (int i = 0; i < n_pass; ++i) out = hd_max(out, static_cast<int>((plan >> (4 * i)) & 15));
  return out;
}

// Unnormalised FFTs (inverse: sign +1) of `count` sequences of M = 2^log2m points stored one after another,
// natural order in and out, following `plan` (fft_schedule), whose passes have at most 2^kMaxLog2 points.
// tw: exp(-2 pi i k / N), k < N/2, N = 2M.
template <typename S, int kMaxLog2, class Sync>
DDFAD_HD void fft_stockham(Cplx<S>* buf, int count, int log2m, uint64_t plan, int n_pass, const Cplx<S>* tw,
                           bool inverse, int tid, int nth, const Sync& sync) {
  int ns_log2 = 0;
  for (int i = 0; i < n_pass; ++i) {
    const int lr = static_cast<int>((plan >> (4 * i)) & 15);
    if (kMaxLog2 >= 4 && lr == 4) {
      stockham_pass<S, 16>(buf, count, log2m, ns_log2, tw, inverse, tid, nth, sync);
    } else if (kMaxLog2 >= 3 && lr == 3) {
      stockham_pass<S, 8>(buf, count, log2m, ns_log2, tw, inverse, tid, nth, sync);
    } else if (kMaxLog2 >= 2 && lr == 2) {
      stockham_pass<S, 4>(buf, count, log2m, ns_log2, tw, inverse, tid, nth, sync);
    } else {
      stockham_pass<S, 2>(buf, count, log2m, ns_log2, tw, inverse, tid, nth, sync);
    }
    ns_log2 += lr;
  }
}

}  // namespace ddfad
