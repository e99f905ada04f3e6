// FD-MFCC kernel bodies, shared by fd_mfcc_kernels.cu and the CPU harness (see hd_common.h).
//
// Two pipelines, one semantics (docs/architecture.md section 3, ddfad_fast/reference.py):
// * power-of-two n_fft: stft_mel_block (a tile of frames: pre-emphasis, centre zero padding, window,
//   real FFTs in shared memory, power, sparse Slaney mel product, dB; per-tile maxima) -> dct_delta_block.
//   The frames and the spectrum never reach device memory. (The shipped presets run fd_mfcc_clip.h instead:
//   a whole clip per block, every size a template constant.)
// * any n_fft: frame_value (frames to device memory) -> rfft (cuFFT, outside) -> mel_db_block -> dct_delta_block.
// dct_delta_block: per-clip top_db floor, DCT-II, Savitzky-Golay deltas, one (B, 3, n_mfcc, T) write (or
// (B, n_mfcc, T) without deltas).
// The frame count T and every table (window, mel bands in band form, DCT, delta start / coefficients, the dB
// reference) come from ddfad_fast.ops.tables, in the layout the CPU operator takes (the one schema
// ddfad::fd_mfcc); nothing here re-derives them. make_*_params fill each pass's parameters: the launchers and
// the CPU harness call the same functions.
#pragma once

#include "fft_math.h"
#include "hd_common.h"

namespace ddfad {

// ---- framing -----------------------------------------------------------------------------------
// Sample k of frame t of a clip x of L samples: pre-emphasis (librosa: y[0] = x[0] + zi_scale*(2x[0]-x[1]),
// y[n] = x[n] - coef*x[n-1]), centre zero padding by n_fft/2, times the window.
DDFAD_HD float frame_value(const float* x, int64_t L, int64_t t, int k, int n_fft, int hop, float coef,
                           float zi_scale, const float* window) {
  const int64_t n = t * hop + k - n_fft / 2;
  if (n < 0 || n >= L) return 0.0f;
  float y;
  if (n == 0) {
    const float x1 = L > 1 ? x[1] : 0.0f;
    y = x[0] + zi_scale * (2.0f * x[0] - x1);
  } else {
    y = x[n] - coef * x[n - 1];
  }
  return y * window[k];
}

// ---- mel + dB -----------------------------------------------------------------------------------
// The Slaney filterbank in band form (tables.mel_bands): band m's weights of bins [lo, hi) from row m of
// `weights` (n_mels, width).
struct MelBands {
  const int64_t* bands;      // (n_mels, 2) non-zero bins [lo, hi) of each band
  const float* weights;      // (n_mels, width)
  int width;
};

struct MelDbParams {
  const Cplx<float>* spec;   // (B, T, F) rfft of the frames
  MelBands mel;
  float* db;                 // (B, T, n_mels) out: 10 log10(max(mel, amin)) - ref_db
  float* tile_max;           // (B, n_tiles) out: maximum of db over each tile
  int T, F, n_mels;
  int tile_frames, n_tiles;  // frames per block, blocks per clip
  float amin, ref_db;
};

inline MelDbParams make_mel_db_params(const float* spec, const int64_t* mel_bands, const float* mel_weights,
                                      int64_t mel_width, float* db, float* tile_max, int64_t n_frames,
                                      int64_t n_freqs, int64_t n_mels, int64_t tile_frames, float amin,
                                      float ref_db) {
  MelDbParams p;
  p.spec = reinterpret_cast<const Cplx<float>*>(spec);
  p.mel = MelBands{mel_bands, mel_weights, static_cast<int>(mel_width)};
  p.db = db;
  p.tile_max = tile_max;
  p.T = static_cast<int>(n_frames);
  p.F = static_cast<int>(n_freqs);
  p.n_mels = static_cast<int>(n_mels);
  p.tile_frames = static_cast<int>(tile_frames);
  p.n_tiles = static_cast<int>((n_frames + tile_frames - 1) / tile_frames);
  p.amin = amin;
  p.ref_db = ref_db;
  return p;
}

// shared memory of one block, in floats
DDFAD_HD int64_t mel_db_smem_floats(int tile_frames, int F, int nth) {
  return static_cast<int64_t>(tile_frames) * F + nth;
}

DDFAD_HD float power_to_db(float power, float amin, float ref_db) {
  return 10.0f * hd_log10(hd_max(power, amin)) - ref_db;
}

// dB of the mel bands of nt frames whose power spectra (nt, F) are in shared memory; writes db_rows
// (nt, n_mels) and, from thread 0, the tile's maximum to *tile_max. `red`: nth floats of shared scratch.
template <class Sync>
DDFAD_HD void mel_db_rows(const float* power, int nt, int F, const MelBands& mel, int n_mels, float amin,
                          float ref_db, float* db_rows, float* tile_max, float* red, int tid, int nth,
                          const Sync& sync) {
  float local = -INFINITY;
  for (int i = tid; i < nt * n_mels; i += nth) {
    const int t = i / n_mels;
    const int m = i - t * n_mels;
    const int lo = static_cast<int>(mel.bands[2 * m]), hi = static_cast<int>(mel.bands[2 * m + 1]);
    const float* w = mel.weights + static_cast<int64_t>(m) * mel.width;
    const float* pw = power + static_cast<int64_t>(t) * F;
    float acc = 0.0f;
    for (int f = lo; f < hi; ++f) acc += w[f - lo] * pw[f];
    const float value = power_to_db(acc, amin, ref_db);
    db_rows[i] = value;
    local = hd_max(local, value);
  }
  const float tile_peak = block_max(local, red, tid, nth, sync);
  if (tid == 0) *tile_max = tile_peak;
}

template <class Sync>
DDFAD_HD void mel_db_block(const MelDbParams& p, int64_t block, int tid, int nth, float* smem, const Sync& sync) {
  const int64_t b = block / p.n_tiles;
  const int t0 = static_cast<int>(block % p.n_tiles) * p.tile_frames;
  const int nt = hd_min(p.tile_frames, p.T - t0);
  float* power = smem;                                  // (nt, F)
  float* red = smem + static_cast<int64_t>(p.tile_frames) * p.F;
  const int64_t row0 = b * p.T + t0;
  const Cplx<float>* spec = p.spec + row0 * p.F;        // the tile's rows are contiguous
  for (int i = tid; i < nt * p.F; i += nth) {
    const Cplx<float> z = spec[i];
    power[i] = z.re * z.re + z.im * z.im;
  }
  sync();
  mel_db_rows(power, nt, p.F, p.mel, p.n_mels, p.amin, p.ref_db, p.db + row0 * p.n_mels, p.tile_max + block, red,
              tid, nth, sync);
}

// ---- framing + FFT + mel + dB in one block (power-of-two n_fft) ---------------------------------------
struct StftMelParams {
  const float* waves;          // (B, L)
  const float* window;         // (n_fft)
  MelBands mel;
  float* db;                   // (B, T, n_mels) out
  float* tile_max;             // (B, n_tiles) out
  int64_t length;              // L
  int T, n_fft, log2_half, hop, n_mels;
  int tile_frames, n_tiles;
  float coef, zi_scale, amin, ref_db;
  int n_pass;                  // FFT passes and their radices (fft_schedule); -1: not schedulable
  uint64_t fft_plan;
};

// nth: threads per block (the FFT schedule depends on it); n_pass < 0 when a pass would need more.
inline StftMelParams make_stft_mel_params(const float* waves, const float* window, const int64_t* mel_bands,
                                          const float* mel_weights, int64_t mel_width, float* db, float* tile_max,
                                          int64_t length, int64_t n_frames, int64_t n_fft, int64_t hop,
                                          int64_t n_mels, float preemphasis, float amin, float ref_db,
                                          int64_t tile_frames, int64_t max_radix, int nth) {
  StftMelParams p;
  p.waves = waves;
  p.window = window;
  p.mel = MelBands{mel_bands, mel_weights, static_cast<int>(mel_width)};
  p.db = db;
  p.tile_max = tile_max;
  p.length = length;
  p.T = static_cast<int>(n_frames);
  p.n_fft = static_cast<int>(n_fft);
  p.log2_half = log2_ceil(n_fft / 2);
  p.hop = static_cast<int>(hop);
  p.n_mels = static_cast<int>(n_mels);
  p.tile_frames = static_cast<int>(tile_frames);
  p.n_tiles = static_cast<int>((n_frames + tile_frames - 1) / tile_frames);
  p.coef = preemphasis;
  p.zi_scale = preemphasis != 0.0f ? 1.0f : 0.0f;
  p.amin = amin;
  p.ref_db = ref_db;
  p.n_pass = fft_schedule(p.log2_half, static_cast<int>(max_radix), nth, &p.fft_plan);
  return p;
}

// shared memory of one block, in floats: twiddles, the tile's frames as half-size complex sequences,
// their power spectra, reduction scratch
DDFAD_HD int64_t stft_mel_smem_floats(int n_fft, int tile_frames, int nth) {
  return static_cast<int64_t>(n_fft) + static_cast<int64_t>(tile_frames) * n_fft +
         static_cast<int64_t>(tile_frames) * (n_fft / 2 + 1) + nth;
}

template <int kMaxLog2, class Sync>
DDFAD_HD void stft_mel_block(const StftMelParams& p, int64_t block, int tid, int nth, float* smem, const Sync& sync) {
  const int N = p.n_fft, M = N / 2, F = M + 1;
  const int64_t b = block / p.n_tiles;
  const int t0 = static_cast<int>(block % p.n_tiles) * p.tile_frames;
  const int nt = hd_min(p.tile_frames, p.T - t0);
  Cplx<float>* tw = reinterpret_cast<Cplx<float>*>(smem);                 // (M)
  Cplx<float>* buf = tw + M;                                               // (tile_frames, M)
  float* power = reinterpret_cast<float*>(buf + static_cast<int64_t>(p.tile_frames) * M);   // (tile_frames, F)
  float* red = power + static_cast<int64_t>(p.tile_frames) * F;
  const float* x = p.waves + b * p.length;
  for (int k = tid; k < M; k += nth) tw[k] = exp_i_pi(-static_cast<float>(k) / static_cast<float>(M));
  for (int i = tid; i < nt * M; i += nth) {             // z[n] = frame[2n] + i frame[2n+1]
    const int j = i >> p.log2_half;
    const int n = i & (M - 1);
    buf[i] = make_cplx<float>(frame_value(x, p.length, t0 + j, 2 * n, N, p.hop, p.coef, p.zi_scale, p.window),
                              frame_value(x, p.length, t0 + j, 2 * n + 1, N, p.hop, p.coef, p.zi_scale, p.window));
  }
  sync();
  fft_stockham<float, kMaxLog2>(buf, nt, p.log2_half, p.fft_plan, p.n_pass, tw, false, tid, nth, sync);
  for (int i = tid; i < nt * F; i += nth) {
    const int j = i / F;
    const int k = i - j * F;
    const Cplx<float>* z = buf + j * M;
    const Cplx<float> X = rfft_unpack(z[k % M], z[(M - k) % M], twiddle_at(tw, k, M));
    power[i] = X.re * X.re + X.im * X.im;
  }
  sync();
  mel_db_rows(power, nt, F, p.mel, p.n_mels, p.amin, p.ref_db, p.db + (b * p.T + t0) * p.n_mels,
              p.tile_max + block, red, tid, nth, sync);
}

// ---- DCT + deltas --------------------------------------------------------------------------------
struct DctDeltaParams {
  const float* db;           // (B, T, n_mels) from mel_db_block
  const float* tile_max;     // (B, n_mel_tiles)
  const float* dct;          // (n_mfcc, n_mels) ortho DCT-II rows
  const int64_t* start;      // (T,) first frame of each output frame's Savitzky-Golay window (tables.delta_bands)
  const float* coef;         // (2, W, T): [order-1][k][t] weight of frame min(start[t] + k, T-1)
  float* out;                // (B, 3, n_mfcc, T), or (B, n_mfcc, T) without deltas
  int T, n_mels, n_mfcc, width;
  int n_mel_tiles;
  int tile_frames, n_tiles;
  float top_db;
  bool use_top_db, with_deltas;
};

// top_db < 0: no floor.
inline DctDeltaParams make_dct_delta_params(const float* db, const float* tile_max, const float* dct,
                                            const int64_t* delta_start, const float* delta_coef, float* out,
                                            int64_t n_frames, int64_t n_mels, int64_t n_mfcc, int64_t width,
                                            int64_t n_mel_tiles, int64_t tile_frames, float top_db,
                                            bool with_deltas) {
  DctDeltaParams p;
  p.db = db;
  p.tile_max = tile_max;
  p.dct = dct;
  p.start = delta_start;
  p.coef = delta_coef;
  p.out = out;
  p.T = static_cast<int>(n_frames);
  p.n_mels = static_cast<int>(n_mels);
  p.n_mfcc = static_cast<int>(n_mfcc);
  p.width = static_cast<int>(width);
  p.n_mel_tiles = static_cast<int>(n_mel_tiles);
  p.tile_frames = static_cast<int>(tile_frames);
  p.n_tiles = static_cast<int>((n_frames + tile_frames - 1) / tile_frames);
  p.top_db = top_db;
  p.use_top_db = top_db >= 0.0f;
  p.with_deltas = with_deltas;
  return p;
}

DDFAD_HD int64_t dct_delta_smem_floats(int tile_frames, int width, int n_mels, int n_mfcc, int nth) {
  const int64_t rows = tile_frames + 2 * (width - 1);
  return rows * n_mels + rows * n_mfcc + static_cast<int64_t>(n_mfcc) * n_mels + nth;
}

template <class Sync>
DDFAD_HD void dct_delta_block(const DctDeltaParams& p, int64_t block, int tid, int nth, float* smem,
                              const Sync& sync) {
  const int64_t b = block / p.n_tiles;
  const int t0 = static_cast<int>(block % p.n_tiles) * p.tile_frames;
  const int nt = hd_min(p.tile_frames, p.T - t0);
  const int r0 = hd_max(0, t0 - (p.width - 1));                 // rows whose MFCCs the tile's deltas read
  const int r1 = hd_min(p.T, t0 + nt + p.width - 1);
  const int max_rows = p.tile_frames + 2 * (p.width - 1);
  float* logmel = smem;                                          // (rows, n_mels), floored dB
  float* mfcc = logmel + static_cast<int64_t>(max_rows) * p.n_mels;   // (rows, n_mfcc)
  float* dct = mfcc + static_cast<int64_t>(max_rows) * p.n_mfcc;      // (n_mfcc, n_mels)
  float* red = dct + static_cast<int64_t>(p.n_mfcc) * p.n_mels;

  float floor = -INFINITY;
  if (p.use_top_db) {
    float local = -INFINITY;
    for (int i = tid; i < p.n_mel_tiles; i += nth) local = hd_max(local, p.tile_max[b * p.n_mel_tiles + i]);
    floor = block_max(local, red, tid, nth, sync) - p.top_db;
  }
  for (int i = tid; i < p.n_mfcc * p.n_mels; i += nth) dct[i] = p.dct[i];
  const float* src = p.db + (b * p.T + r0) * p.n_mels;
  for (int i = tid; i < (r1 - r0) * p.n_mels; i += nth) logmel[i] = hd_max(src[i], floor);
  sync();
  for (int i = tid; i < (r1 - r0) * p.n_mfcc; i += nth) {
    const int r = i / p.n_mfcc;
    const int c = i - r * p.n_mfcc;
    const float* row = logmel + static_cast<int64_t>(r) * p.n_mels;
    const float* basis = dct + static_cast<int64_t>(c) * p.n_mels;
    float acc = 0.0f;
    for (int m = 0; m < p.n_mels; ++m) acc += basis[m] * row[m];
    mfcc[i] = acc;
  }
  sync();
  const int W = p.width;
  float* out = p.out + b * (p.with_deltas ? 3 : 1) * p.n_mfcc * static_cast<int64_t>(p.T);
  const int64_t T = p.T;
  for (int i = tid; i < p.n_mfcc * nt; i += nth) {   // t fastest: coalesced stores (and weight loads) along frames
    const int c = i / nt;
    const int t = t0 + (i - c * nt);
    // frames start[t] .. start[t] + W - 1 lie in [t - (W-1), t + W - 1]; the rows past the last frame of a
    // clip shorter than W have zero weight (clamped to a frame the tile holds)
    const int64_t o = static_cast<int64_t>(c) * p.T + t;
    out[o] = mfcc[(t - r0) * p.n_mfcc + c];
    if (!p.with_deltas) continue;
    const int start = static_cast<int>(p.start[t]);
    const float* w1 = p.coef + t;
    const float* w2 = p.coef + W * T + t;
    float d1 = 0.0f, d2 = 0.0f;
    for (int k = 0; k < W; ++k) {
      const int r = hd_min(start + k, p.T - 1) - r0;
      const float v = mfcc[r * p.n_mfcc + c];
      d1 += w1[k * T] * v;
      d2 += w2[k * T] * v;
    }
    out[o + static_cast<int64_t>(p.n_mfcc) * p.T] = d1;
    out[o + 2 * static_cast<int64_t>(p.n_mfcc) * p.T] = d2;
  }
}

}  // namespace ddfad
