// FD-MFCC kernel bodies, shared by fd_mfcc_kernels.cu and the CPU harness (see hd_common.h).
//
// Two pipelines, one semantics (docs/architecture.md section 3, ddfad_fast/reference.py):
// * power-of-two n_fft: stft_mel_block (a tile of frames: pre-emphasis, centre zero padding, window,
//   real FFTs in shared memory, power, sparse Slaney mel product, dB; per-tile maxima) -> dct_delta_block.
//   The frames and the spectrum never reach device memory.
// * any n_fft: frame_value (frames to device memory) -> rfft (cuFFT, outside) -> mel_db_block -> dct_delta_block.
// dct_delta_block: per-clip top_db floor, DCT-II, Savitzky-Golay deltas, one (B, 3, n_mfcc, T) write.
// The frame count T and every table (window, mel bands, DCT, delta start / coefficients, the dB
// reference) come from ddfad_fast/dsp.py; nothing here re-derives them.
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
struct MelDbParams {
  const Cplx<float>* spec;   // (B, T, F) rfft of the frames
  const float* mel;          // (n_mels, F) Slaney filterbank
  const int* bands;          // (n_mels, 2) non-zero bins [lo, hi) of each band
  float* db;                 // (B, T, n_mels) out: 10 log10(max(mel, amin)) - ref_db
  float* tile_max;           // (B, n_tiles) out: maximum of db over each tile
  int T, F, n_mels;
  int tile_frames, n_tiles;  // frames per block, blocks per clip
  float amin, ref_db;
};

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
DDFAD_HD void mel_db_rows(const float* power, int nt, int F, const float* mel, const int* bands, int n_mels,
                          float amin, float ref_db, float* db_rows, float* tile_max, float* red, int tid, int nth,
                          const Sync& sync) {
  float local = -INFINITY;
  for (int i = tid; i < nt * n_mels; i += nth) {
    const int t = i / n_mels;
    const int m = i - t * n_mels;
    const int lo = bands[2 * m], hi = bands[2 * m + 1];
    const float* w = mel + static_cast<int64_t>(m) * F;
    const float* pw = power + static_cast<int64_t>(t) * F;
    float acc = 0.0f;
    for (int f = lo; f < hi; ++f) acc += w[f] * pw[f];
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
  mel_db_rows(power, nt, p.F, p.mel, p.bands, p.n_mels, p.amin, p.ref_db, p.db + row0 * p.n_mels,
              p.tile_max + block, red, tid, nth, sync);
}

// ---- framing + FFT + mel + dB in one block (power-of-two n_fft) ---------------------------------------
struct StftMelParams {
  const float* waves;          // (B, L)
  const float* window;         // (n_fft)
  const Cplx<float>* twiddle;  // (n_fft/2) exp(-2 pi i k / n_fft)
  const float* mel;            // (n_mels, F)
  const int* bands;            // (n_mels, 2)
  float* db;                   // (B, T, n_mels) out
  float* tile_max;             // (B, n_tiles) out
  int64_t length;              // L
  int T, n_fft, log2_half, hop, n_mels;
  int tile_frames, n_tiles;
  float coef, zi_scale, amin, ref_db;
  int n_pass;                  // FFT passes and their radices (fft_schedule)
  uint64_t fft_plan;
};

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
  for (int k = tid; k < M; k += nth) tw[k] = p.twiddle[k];
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
  mel_db_rows(power, nt, F, p.mel, p.bands, p.n_mels, p.amin, p.ref_db, p.db + (b * p.T + t0) * p.n_mels,
              p.tile_max + block, red, tid, nth, sync);
}

// ---- DCT + deltas --------------------------------------------------------------------------------
struct DctDeltaParams {
  const float* db;           // (B, T, n_mels) from mel_db_block
  const float* tile_max;     // (B, n_mel_tiles)
  const float* dct;          // (n_mfcc, n_mels) ortho DCT-II rows
  const int* start;          // (T,) first frame of each output frame's Savitzky-Golay window (dsp.delta_bands)
  const float* coef;         // (2, W, T): [order-1][k][t] weight of frame min(start[t] + k, T-1)
  float* out;                // (B, 3, n_mfcc, T)
  int T, n_mels, n_mfcc, width;
  int n_mel_tiles;
  int tile_frames, n_tiles;
  float top_db;
  bool use_top_db;
};

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
  float* out = p.out + b * 3 * p.n_mfcc * static_cast<int64_t>(p.T);
  const int64_t T = p.T;
  for (int i = tid; i < p.n_mfcc * nt; i += nth) {   // t fastest: coalesced stores (and weight loads) along frames
    const int c = i / nt;
    const int t = t0 + (i - c * nt);
    // frames start[t] .. start[t] + W - 1 lie in [t - (W-1), t + W - 1]; the rows past the last frame of a
    // clip shorter than W have zero weight (clamped to a frame the tile holds)
    const int start = p.start[t];
    const float* w1 = p.coef + t;
    const float* w2 = p.coef + W * T + t;
    float d1 = 0.0f, d2 = 0.0f;
    for (int k = 0; k < W; ++k) {
      const int r = hd_min(start + k, p.T - 1) - r0;
      const float v = mfcc[r * p.n_mfcc + c];
      d1 += w1[k * T] * v;
      d2 += w2[k * T] * v;
    }
    const int64_t o = static_cast<int64_t>(c) * p.T + t;
    out[o] = mfcc[(t - r0) * p.n_mfcc + c];
    out[o + static_cast<int64_t>(p.n_mfcc) * p.T] = d1;
    out[o + 2 * static_cast<int64_t>(p.n_mfcc) * p.T] = d2;
  }
}

}  // namespace ddfad
