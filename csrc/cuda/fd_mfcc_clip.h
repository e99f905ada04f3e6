// FD-MFCC of whole clips, one clip at a time per block (a persistent grid walks the batch): the kernel body
// of fd_mfcc_clip_kernel (fd_mfcc_clip.cu), shared with the CPU harness (see hd_common.h).
//
// Every size that shapes a loop is a template constant (n_fft, FFT points per lane, n_mels, n_mfcc, delta
// width): no run-time division or modulo is left in a per-element loop. Per clip, with 4 block barriers:
//   A. the clip enters shared memory once (128-bit loads), pre-emphasised on the way, centre-padded with zeros;
//   B. each warp transforms frames in registers (warp_fft.h; only __syncwarp), the window's zero taps
//      skipped, then power, the sparse mel product from shared tables, dB; the clip's maximum by shuffles;
//   C. the top_db floor, the DCT of the whole (T, n_mels) dB tile into (n_mfcc, T) MFCCs (in the clip's space);
//   D. the Savitzky-Golay deltas as a W-tap stencil on chip (the clip is whole: no halo), one coalesced store.
// Semantics, tables and tolerances are those of fd_mfcc_math.h / ddfad_fast.ops.reference; every table comes
// from ddfad_fast.ops.tables (the launcher's arguments), nothing is re-derived here.
#pragma once

#include "fd_mfcc_math.h"
#include "hd_common.h"
#include "warp_fft.h"

namespace ddfad {

struct FdMfccClipParams {
  const float* waves;          // (B, L)
  const float* window;         // (n_fft,) zero outside [win_lo, win_hi)
  const int64_t* mel_bands;    // (n_mels, 2) non-zero bins [lo, hi) of each band
  const float* mel_weights;    // (n_mels, mel_width) each band's weights from its lo
  const float* dct;            // (n_mfcc, n_mels)
  const int64_t* delta_start;  // (T,)
  const float* delta_coef;     // (2, W, T)
  float* out;                  // (B, 3, n_mfcc, T), or (B, n_mfcc, T) without deltas
  int64_t batch;
  int length;                  // L
  int T, hop, win_lo, win_hi, mel_width;
  float coef, zi_scale, amin, ref_db, top_db;
  bool use_top_db, with_deltas;
};

// The parameters of one call (the launcher and the harness both build them here). top_db < 0: no floor.
inline FdMfccClipParams make_fd_mfcc_clip_params(const float* waves, const float* window, int64_t win_lo,
                                                 int64_t win_hi, const int64_t* mel_bands, const float* mel_weights,
                                                 int64_t mel_width, const float* dct, const int64_t* delta_start,
                                                 const float* delta_coef, float* out, int64_t batch, int64_t length,
                                                 int64_t n_frames, int64_t hop, float preemphasis, float amin,
                                                 float ref_db, float top_db, bool with_deltas) {
  FdMfccClipParams p;
  p.waves = waves;
  p.window = window;
  p.mel_bands = mel_bands;
  p.mel_weights = mel_weights;
  p.dct = dct;
  p.delta_start = delta_start;
  p.delta_coef = delta_coef;
  p.out = out;
  p.batch = batch;
  p.length = static_cast<int>(length);
  p.T = static_cast<int>(n_frames);
  p.hop = static_cast<int>(hop);
  p.win_lo = static_cast<int>(win_lo);
  p.win_hi = static_cast<int>(win_hi);
  p.mel_width = static_cast<int>(mel_width);
  p.coef = preemphasis;
  p.zi_scale = preemphasis != 0.0f ? 1.0f : 0.0f;
  p.amin = amin;
  p.ref_db = ref_db;
  p.top_db = top_db;
  p.use_top_db = top_db >= 0.0f;
  p.with_deltas = with_deltas;
  return p;
}

DDFAD_HD constexpr int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Shared-memory layout of one block (floats; every region starts on 16 bytes).
template <int LOG2N, int LOG2R, int N_MELS, int N_MFCC>
struct ClipLayout {
  using Fft = WarpRfft<LOG2N, LOG2R>;
  static constexpr int N = Fft::N;
  static constexpr int N_CG = (N_MFCC + 3) / 4;        // DCT coefficients in groups of four (one 128-bit load)
  static constexpr int DB_STRIDE = N_MELS + 1;         // odd: the DCT's lanes (32 frames) hit 32 banks
  // a frame's power buffer; the groups of one warp start 32 / G banks apart
  static constexpr int POWER = Fft::G == 1 ? round_up(Fft::R * (Fft::P + 1), 4)
                                           : round_up(Fft::R * (Fft::P + 1), 32) + 32 / Fft::G;
  int window, bands, melw, dct, red, power, db, clip, total;
  int time_stride;                                     // TP: frames of an MFCC row in the clip's space

  DDFAD_HD ClipLayout(int mel_width, int length, int T, int nth) {
    time_stride = round_up(T, 32);
    window = 0;
    bands = window + N;
    melw = bands + round_up(2 * N_MELS, 4);
    dct = melw + round_up(N_MELS * mel_width, 4);
    red = dct + N_MELS * 4 * N_CG;
    power = red + 32;
    db = power + (nth / 32) * Fft::G * POWER;
    clip = db + round_up(T * DB_STRIDE, 4);
    total = clip + round_up(hd_max(length + N, N_MFCC * time_stride), 4);
  }
};

// The tables into shared memory, once per block.
template <int LOG2N, int LOG2R, int N_MELS, int N_MFCC, class Ctx>
DDFAD_HD void clip_load_tables(const FdMfccClipParams& p, const ClipLayout<LOG2N, LOG2R, N_MELS, N_MFCC>& lay,
                               float* smem, const Ctx& ctx) {
  using Lay = ClipLayout<LOG2N, LOG2R, N_MELS, N_MFCC>;
  constexpr int NCP = 4 * Lay::N_CG;
  int* bands = reinterpret_cast<int*>(smem + lay.bands);
  for (int i = ctx.tid; i < Lay::N; i += ctx.nth) smem[lay.window + i] = p.window[i];
  for (int i = ctx.tid; i < 2 * N_MELS; i += ctx.nth) bands[i] = static_cast<int>(p.mel_bands[i]);
  for (int i = ctx.tid; i < N_MELS * p.mel_width; i += ctx.nth) smem[lay.melw + i] = p.mel_weights[i];
  for (int i = ctx.tid; i < N_MELS * NCP; i += ctx.nth) {   // transposed, (n_mels, NCP): coefficients contiguous
    const int m = i / NCP, c = i - (i / NCP) * NCP;
    smem[lay.dct + i] = c < N_MFCC ? p.dct[c * N_MELS + m] : 0.0f;
  }
  ctx.sync();
}

// A. The clip, pre-emphasised (librosa's initial state at n = 0), at clip[N/2 ..], zeros on both sides.
template <int N, class Ctx>
DDFAD_HD void clip_load(const FdMfccClipParams& p, int64_t b, float* pad, const Ctx& ctx) {
  const int L = p.length;
  const float* x = p.waves + b * static_cast<int64_t>(L);
  const float c = p.coef;
  for (int i = ctx.tid; i < N / 2; i += ctx.nth) {
    pad[i] = 0.0f;
    pad[N / 2 + L + i] = 0.0f;
  }
  const float x1 = L > 1 ? x[1] : 0.0f;
  const float first = x[0] + p.zi_scale * (2.0f * x[0] - x1);
  float* y = pad + N / 2;
  if ((L & 3) == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    const F4* x4 = reinterpret_cast<const F4*>(x);
    F4* y4 = reinterpret_cast<F4*>(y);
    for (int q = ctx.tid; q < L / 4; q += ctx.nth) {
      const F4 v = x4[q];
      const float before = q > 0 ? x[4 * q - 1] : 0.0f;
      F4 out;
      out.x = q > 0 ? v.x - c * before : first;
      out.y = v.y - c * v.x;
      out.z = v.z - c * v.y;
      out.w = v.w - c * v.z;
      y4[q] = out;
    }
  } else {
    for (int i = ctx.tid; i < L; i += ctx.nth) y[i] = i > 0 ? x[i] - c * x[i - 1] : first;
  }
}

// The whole op for clips block, block + n_blocks, ... of the batch.
template <int LOG2N, int LOG2R, int N_MELS, int N_MFCC, int WIDTH, class Ctx>
DDFAD_HD void fd_mfcc_clip_run(const FdMfccClipParams& p, int64_t block, int64_t n_blocks, float* smem,
                               const Ctx& ctx) {
  using Fft = WarpRfft<LOG2N, LOG2R>;
  using Lay = ClipLayout<LOG2N, LOG2R, N_MELS, N_MFCC>;
  constexpr int N = Fft::N, R = Fft::R, P = Fft::P, G = Fft::G;
  const Lay lay(p.mel_width, p.length, p.T, ctx.nth);
  const int T = p.T, TP = lay.time_stride;
  const int lane = ctx.tid & 31, warp = ctx.tid >> 5, n_warps = ctx.nth >> 5;
  const int g = lane / P;                              // the lane's frame within the warp's G frames
  const float* win = smem + lay.window;
  const int* bands = reinterpret_cast<const int*>(smem + lay.bands);
  const float* melw = smem + lay.melw;
  const F4* dct4 = reinterpret_cast<const F4*>(smem + lay.dct);
  float* red = smem + lay.red;
  float* power = smem + lay.power + (warp * G + g) * Lay::POWER;
  float* db = smem + lay.db;
  float* pad = smem + lay.clip;                        // phases A-B: the padded clip
  float* mfcc = smem + lay.clip;                       // phases C-D: (n_mfcc, TP) MFCCs
  Fft fft;
  fft.init(lane);
  clip_load_tables<LOG2N, LOG2R, N_MELS, N_MFCC>(p, lay, smem, ctx);
  const int n_chunks = (T + 31) >> 5;                  // 32-frame chunks of phases C and D
  const int channels = p.with_deltas ? 3 : 1;

  for (int64_t b = block; b < p.batch; b += n_blocks) {
    clip_load<N>(p, b, pad, ctx);
    ctx.sync();
    // B. frames t = warp * G + g, then every n_warps * G (a warp's lanes run its loop together)
    float peak = -INFINITY;
    for (int t0 = warp * G; t0 < T; t0 += n_warps * G) {
      const int t = t0 + g;
      const bool active = t < T;
      const float* frame = pad + (active ? t : 0) * p.hop;
      Cplx<float> a[R];
      DDFAD_UNROLL
      for (int r = 0; r < R; ++r) {
        const int k = 2 * (fft.j + P * r);               // samples k, k + 1 of the frame
        a[r] = active && k + 1 >= p.win_lo && k < p.win_hi
                   ? make_cplx<float>(frame[k] * win[k], frame[k + 1] * win[k + 1])
                   : make_cplx<float>(0.0f, 0.0f);
      }
      fft.forward(a, ctx);
      float pw[R], nyquist;
      fft.power(a, ctx, pw, nyquist);
      ctx.warp_sync();                                 // the previous frame's mel reads are done
      DDFAD_UNROLL
      for (int k1 = 0; k1 < R; ++k1) power[k1 * (P + 1) + fft.k2] = pw[k1];
      if (fft.j == 0) power[P] = nyquist;
      ctx.warp_sync();
      if (active) {
        float* row = db + t * Lay::DB_STRIDE;
        for (int m = fft.j; m < N_MELS; m += P) {
          const int lo = bands[2 * m], hi = bands[2 * m + 1];
          const float* w = melw + m * p.mel_width;
          float acc = 0.0f;
          for (int f = lo; f < hi; ++f) acc += w[f - lo] * power[Fft::slot(f)];
          const float value = power_to_db(acc, p.amin, p.ref_db);
          row[m] = value;
          peak = hd_max(peak, value);
        }
      }
    }
    DDFAD_UNROLL
    for (int o = 16; o > 0; o >>= 1) peak = hd_max(peak, ctx.shfl_xor(peak, o));
    if (lane == 0) red[warp] = peak;
    ctx.sync();
    // C. floor, then the DCT of 32 frames x 4 coefficients per warp job
    float floor = -INFINITY;
    if (p.use_top_db) {
      float top = -INFINITY;
      for (int w = 0; w < n_warps; ++w) top = hd_max(top, red[w]);
      floor = top - p.top_db;
    }
    for (int job = warp; job < Lay::N_CG * n_chunks; job += n_warps) {
      const int cg = job % Lay::N_CG;
      const int t = (job / Lay::N_CG) * 32 + lane;
      if (t >= T) continue;
      const float* row = db + t * Lay::DB_STRIDE;
      F4 acc = {0.0f, 0.0f, 0.0f, 0.0f};
      DDFAD_UNROLL
      for (int m = 0; m < N_MELS; ++m) {
        const float v = hd_max(row[m], floor);
        const F4 d = dct4[m * Lay::N_CG + cg];
        acc.x += d.x * v;
        acc.y += d.y * v;
        acc.z += d.z * v;
        acc.w += d.w * v;
      }
      const float vals[4] = {acc.x, acc.y, acc.z, acc.w};
      DDFAD_UNROLL
      for (int i = 0; i < 4; ++i) {
        if (4 * cg + i < N_MFCC) mfcc[(4 * cg + i) * TP + t] = vals[i];
      }
    }
    ctx.sync();
    // D. deltas and the store, 32 frames of one coefficient per warp job, coalesced along frames
    float* out = p.out + b * channels * N_MFCC * static_cast<int64_t>(T);
    for (int job = warp; job < N_MFCC * n_chunks; job += n_warps) {
      const int c = job % N_MFCC;
      const int t = (job / N_MFCC) * 32 + lane;
      if (t >= T) continue;
      const float* row = mfcc + c * TP;
      out[c * T + t] = row[t];
      if (p.with_deltas) {
        const int start = static_cast<int>(p.delta_start[t]);
        float d1 = 0.0f, d2 = 0.0f;
        DDFAD_UNROLL
        for (int k = 0; k < WIDTH; ++k) {
          const float v = row[hd_min(start + k, T - 1)];
          d1 += p.delta_coef[k * T + t] * v;
          d2 += p.delta_coef[(WIDTH + k) * T + t] * v;
        }
        out[(N_MFCC + c) * T + t] = d1;
        out[(2 * N_MFCC + c) * T + t] = d2;
      }
    }
    ctx.sync();                                         // phase D read the space the next clip loads into
  }
}

}  // namespace ddfad
