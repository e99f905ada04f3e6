// Fast Griffin-Lim kernel bodies, shared by griffin_lim_kernels.cu and the CPU harness (see hd_common.h).
//
// Semantics: librosa.griffinlim with center=True and zero padding (ddfad_fast/reference.py):
//   rebuilt = STFT(ISTFT(x));  a = rebuilt - coef * prev;  x = mag * a / (|a| + eps);  prev = rebuilt
// with coef = momentum / (1 + momentum) and eps the dtype's smallest normal number. Spectra are
// frame-major (B, T, F) complex, F = n_fft/2 + 1. The inverse real FFT reads only the real part of the
// DC and Nyquist bins, so the step stores those bins real.
#pragma once

#include "fft_math.h"
#include "hd_common.h"

namespace ddfad {

// ---- one bin of the momentum step ----------------------------------------------------------------
template <typename S>
DDFAD_HD Cplx<S> gla_update(Cplx<S> rebuilt, Cplx<S> prev, S mag, S coef, S eps, bool real_only) {
  const S ar = rebuilt.re - coef * prev.re;
  const S ai = rebuilt.im - coef * prev.im;
  const S s = mag / (hd_sqrt(ar * ar + ai * ai) + eps);
  return make_cplx<S>(ar * s, real_only ? S(0) : ai * s);
}

// ---- overlap-add as a gather ---------------------------------------------------------------------
// Clip-local positions are 32-bit (callers check n_fft + hop*(T-1) < 2^31), and divisions by hop and n_fft
// go through FastDiv (hd_common.h): a run-time division per sample would cost more than its sum.
//
// Sample p of the centre-padded inverse STFT of frames (T, n_fft) (time frames of one clip, unwindowed),
// before cropping and normalisation: sum over the frames t covering p of window[p - t*hop] * frames[t][p - t*hop].
// Only frames in [t_lo, t_hi) are read; frame t is at frames + (t - t_lo) * frame_stride.
template <typename S>
DDFAD_HD S ola_sum(const S* frames, int frame_stride, const S* window, int p, int n_fft, int hop,
                   const FastDiv& div_hop, int t_lo, int t_hi) {
  const int last = hd_min(fast_div(p, div_hop), t_hi - 1);   // frames t with t*hop <= p < t*hop + n_fft
  const int first = p < n_fft ? 0 : fast_div(p - n_fft, div_hop) + 1;
  S acc = 0;
  for (int t = hd_max(first, t_lo); t <= last; ++t) {
    const int k = p - t * hop;
    acc += window[k] * frames[static_cast<int64_t>(t - t_lo) * frame_stride + k];
  }
  return acc;
}

// Whether padded position p carries a sample of the cropped signal: 0 <= p - n_fft/2 < length and p
// inside the n_fft + hop*(T-1) samples the frames cover (istft pads with zeros beyond).
DDFAD_HD bool ola_live(int p, int n_fft, int64_t length, int sig_len) {
  const int n = p - n_fft / 2;
  return n >= 0 && n < length && p < sig_len;
}

// Output element j of overlap_add for one clip: reframe=false -> sample j of the signal (length);
// reframe=true -> element j = t*n_fft + k of the windowed, centre-zero-padded frames of that signal.
template <typename S>
DDFAD_HD S ola_output(const S* frames_clip, const S* window, const S* inv_env, int j, int T, int n_fft, int hop,
                      const FastDiv& div_hop, const FastDiv& div_n_fft, int64_t length, bool reframe) {
  const int sig_len = n_fft + hop * (T - 1);
  int p;
  S gain = 1;
  if (reframe) {
    const int t = fast_div(j, div_n_fft);
    const int k = j - t * n_fft;
    p = t * hop + k;
    gain = window[k];
  } else {
    p = j + n_fft / 2;
  }
  if (!ola_live(p, n_fft, length, sig_len)) return S(0);
  return gain * inv_env[p] * ola_sum(frames_clip, n_fft, window, p, n_fft, hop, div_hop, 0, T);
}

// ---- one fused fast Griffin-Lim iteration for a tile of frames ---------------------------------------
template <typename S>
struct GlaFusedParams {
  const Cplx<S>* x_in;       // (B, T, F) current estimate
  Cplx<S>* x_out;            // (B, T, F) next estimate (a different buffer: neighbouring tiles read x_in)
  Cplx<S>* prev;             // (B, T, F) previous rebuilt spectrum, overwritten with this one
  const S* mag;              // (B, T, F)
  const S* window;           // (n_fft)
  const S* inv_env;          // (n_fft + hop*(T-1))
  int T, n_fft, log2_half, hop;
  FastDiv div_hop, div_freqs;  // by hop and by F = n_fft/2 + 1
  int halo;                  // (n_fft - 1) / hop: frames on each side that reach into a tile's frames
  int tile_frames, n_tiles;  // output frames per block, blocks per clip
  int64_t length;            // samples of the signal (istft length)
  S coef, eps;
  int n_pass;                // FFT passes and their radices (fft_schedule); -1: not schedulable with nth threads
  uint64_t fft_plan;
};

// The parameters of one iteration (the launcher and the harness both build them here): power-of-two n_fft,
// nth threads per block, FFT passes of at most max_radix points.
template <typename S>
GlaFusedParams<S> make_gla_fused_params(const S* x_in, S* x_out, S* prev, const S* mag, const S* window,
                                        const S* inv_env, int64_t n_frames, int64_t n_fft, int64_t hop, int64_t length,
                                        S coef, S eps, int64_t tile_frames, int64_t max_radix, int nth) {
  GlaFusedParams<S> p;
  p.x_in = reinterpret_cast<const Cplx<S>*>(x_in);
  p.x_out = reinterpret_cast<Cplx<S>*>(x_out);
  p.prev = reinterpret_cast<Cplx<S>*>(prev);
  p.mag = mag;
  p.window = window;
  p.inv_env = inv_env;
  p.T = static_cast<int>(n_frames);
  p.n_fft = static_cast<int>(n_fft);
  const int bits = log2_ceil(n_fft / 2);
  p.log2_half = bits;
  p.hop = static_cast<int>(hop);
  p.div_hop = make_fast_div(hop);
  p.div_freqs = make_fast_div(n_fft / 2 + 1);
  p.halo = static_cast<int>((n_fft - 1) / hop);
  p.tile_frames = static_cast<int>(tile_frames);
  p.n_tiles = static_cast<int>((n_frames + tile_frames - 1) / tile_frames);
  p.length = length;
  p.coef = coef;
  p.eps = eps;
  p.n_pass = fft_schedule(bits, static_cast<int>(max_radix), nth, &p.fft_plan);
  return p;
}

// shared memory of one block, in scalars: twiddles, input frame buffers, the tile's signal segment, the
// window, the segment's inverse envelope
DDFAD_HD int64_t gla_fused_smem_scalars(int n_fft, int hop, int tile_frames) {
  const int halo = (n_fft - 1) / hop;
  const int64_t segment = static_cast<int64_t>(tile_frames - 1) * hop + n_fft;
  return n_fft + static_cast<int64_t>(tile_frames + 2 * halo) * n_fft + 2 * segment + n_fft;
}

template <typename S, int kMaxLog2, class Sync>
DDFAD_HD void gla_fused_block(const GlaFusedParams<S>& p, int64_t block, int tid, int nth, S* smem,
                              const Sync& sync) {
  const int N = p.n_fft, M = N / 2, F = M + 1, H = p.hop;
  const int64_t b = block / p.n_tiles;
  const int t0 = static_cast<int>(block % p.n_tiles) * p.tile_frames;
  const int t1 = hd_min(p.T, t0 + p.tile_frames);
  const int n_out = t1 - t0;
  const int i0 = hd_max(0, t0 - p.halo);             // input frames [i0, i1) overlap the tile's frames
  const int i1 = hd_min(p.T, t1 + p.halo);
  const int n_in = i1 - i0;
  const int64_t clip = b * p.T;                      // first frame row of this clip
  const int p0 = t0 * H;                             // the tile's signal segment: padded positions [p0, p0 + seg)
  const int seg = (n_out - 1) * H + N;
  const int max_seg = (p.tile_frames - 1) * H + N;
  Cplx<S>* tw = reinterpret_cast<Cplx<S>*>(smem);                      // (M)
  Cplx<S>* buf = tw + M;                                               // (tile_frames + 2 halo, M)
  S* sig = reinterpret_cast<S*>(buf + static_cast<int64_t>(p.tile_frames + 2 * p.halo) * M);   // (max_seg)
  S* win = sig + max_seg;                                              // (N)
  S* env = win + N;                                                    // (max_seg) inv_env[p0 ..]

  for (int k = tid; k < M; k += nth) tw[k] = exp_i_pi(-static_cast<S>(k) / static_cast<S>(M));
  for (int k = tid; k < N; k += nth) win[k] = p.window[k];
  for (int i = tid; i < seg; i += nth) env[i] = p.inv_env[p0 + i];
  sync();
  // 1. inverse real FFTs of the input frames: pack into half-size complex spectra, Stockham passes
  for (int i = tid; i < n_in * M; i += nth) {
    const int j = i >> p.log2_half;
    const int k = i & (M - 1);
    const Cplx<S>* x = p.x_in + (clip + i0 + j) * F;
    buf[i] = irfft_pack(x[k], x[M - k], tw[k], k == 0);
  }
  sync();
  fft_stockham<S, kMaxLog2>(buf, n_in, p.log2_half, p.fft_plan, p.n_pass, tw, true, tid, nth, sync);
  // 2. overlap-add over the tile's signal segment, padded positions [t0*H, (t1-1)*H + N); the frame
  //    samples are buf read as scalars, times M (the inverse FFT is unnormalised)
  const S* frames = reinterpret_cast<const S*>(buf);
  const int sig_len = N + H * (p.T - 1);
  const S inv_m = S(1) / S(M);
  for (int i = tid; i < seg; i += nth) {
    const int pos = p0 + i;
    sig[i] = ola_live(pos, N, p.length, sig_len)
                 ? inv_m * env[i] * ola_sum(frames, N, win, pos, N, H, p.div_hop, i0, i1)
                 : S(0);
  }
  sync();
  // 3. forward real FFTs of the tile's windowed frames
  for (int i = tid; i < n_out * M; i += nth) {
    const int j = i >> p.log2_half;
    const int n = i & (M - 1);
    const S* s = sig + j * H + 2 * n;
    buf[i] = make_cplx<S>(win[2 * n] * s[0], win[2 * n + 1] * s[1]);
  }
  sync();
  fft_stockham<S, kMaxLog2>(buf, n_out, p.log2_half, p.fft_plan, p.n_pass, tw, false, tid, nth, sync);
  // 4. unpack, momentum step, write the next estimate and the rebuilt spectrum
  for (int i = tid; i < n_out * F; i += nth) {
    const int j = fast_div(i, p.div_freqs);
    const int k = i - j * F;
    const Cplx<S>* z = buf + j * M;
    const Cplx<S> rebuilt = rfft_unpack(z[k & (M - 1)], z[(M - k) & (M - 1)], twiddle_at(tw, k, M));
    const int64_t g = (clip + t0 + j) * F + k;
    const Cplx<S> before = p.prev[g];
    p.x_out[g] = gla_update(rebuilt, before, p.mag[g], p.coef, p.eps, k == 0 || k == M);
    p.prev[g] = rebuilt;
  }
}

}  // namespace ddfad
