// FD-MFCC on the CPU: pre-emphasis + centred framing + window, batched real FFT (at::fft, MKL or
// pocketfft), then one fused pass per clip: power -> sparse Slaney mel -> dB with a per-clip top_db
// floor -> DCT-II -> Savitzky-Golay deltas. Clips are processed in groups, one group per task, so a
// group's frames and spectra stay in the task's cache between the three stages.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <optional>
#include <torch/library.h>

#include "common.h"
#include "fd_mfcc.h"
#include "vecmath.h"

namespace ddfad {
namespace cpu {
namespace {

// Constant tables of one call, as raw pointers (all contiguous, in the dtype of the waves). Every table,
// the frame count and the window's support come from ddfad_fast/dsp.py: nothing is re-derived here.
template <typename scalar_t>
struct Tables {
  const scalar_t* window;        // (n_fft,)
  const int64_t* mel_bands;      // (n_mels, 2): the non-zero FFT bins [lo, hi) of each band
  const scalar_t* mel_weights;   // (n_mels, band_width): the band's weights, zero-padded
  const scalar_t* dct;           // (n_mfcc, n_mels)
  const int64_t* delta_start;    // (T,): first frame of each output frame's delta window
  const scalar_t* delta_coef;    // (2, W, T): coefficient j of output frame t, order 1 then order 2
};

struct Sizes {
  int64_t length, n_fft, hop, n_frames, n_freqs, n_mels, band_width, n_mfcc, delta_width;
  int64_t win_lo, win_hi;             // the window's nonzero taps are [win_lo, win_hi) (dsp.window_support)
  int64_t interior_lo, interior_hi;   // frames sharing one centred delta filter (window starts at t - W / 2)
  double preemphasis, amin, ref_db, top_db;
  bool floor, with_deltas;
};

// Windowed frames of one pre-emphasised, centre-zero-padded clip: frames (T, n_fft). Only the window's
// support [win_lo, win_hi) is written: the caller zeroes the rest of the buffer once.
template <typename scalar_t>
void frame_clip(const scalar_t* x, const Tables<scalar_t>& tab, const Sizes& s, scalar_t* frames) {
  const scalar_t coef = static_cast<scalar_t>(s.preemphasis);
  const int64_t half = s.n_fft / 2;
  // librosa's initial state zi = 2 x[0] - x[1] gives y[0] = x[0] + zi (x[1] = 0 for a 1-sample clip)
  const scalar_t x1 = s.length > 1 ? x[1] : scalar_t(0);
  const scalar_t first = s.preemphasis == 0.0 ? x[0] : x[0] + (2 * x[0] - x1);
  const scalar_t* __restrict__ w = tab.window;
  for (int64_t t = 0; t < s.n_frames; ++t) {
    scalar_t* __restrict__ row = frames + t * s.n_fft;
    const int64_t base = t * s.hop - half;                    // sample under row[0]
    // samples of the clip lie under [k0, k1) of the row
    int64_t k0 = std::min(std::max(s.win_lo, -base), s.win_hi);
    const int64_t k1 = std::max(k0, std::min(s.win_hi, s.length - base));
    std::fill(row + s.win_lo, row + k0, scalar_t(0));
    std::fill(row + k1, row + s.win_hi, scalar_t(0));
    if (k0 < k1 && base + k0 == 0) {
      row[k0] = first * w[k0];
      ++k0;
    }
    const scalar_t* __restrict__ cur = x + base;
    for (int64_t k = k0; k < k1; ++k) row[k] = (cur[k] - coef * cur[k - 1]) * w[k];
  }
}

// Spectrum (T, F) complex -> out (1 or 3, n_mfcc, T). work: n_freqs + n_mels * T scalars.
template <typename scalar_t>
void features_of_clip(const scalar_t* spec, const Tables<scalar_t>& tab, const Sizes& s, scalar_t* work,
                      scalar_t* out) {
  const int64_t T = s.n_frames, F = s.n_freqs, M = s.n_mels, K = s.n_mfcc;
  const scalar_t amin = static_cast<scalar_t>(s.amin);
  scalar_t* __restrict__ power = work;
  scalar_t* __restrict__ log_mel = work + F;                   // (M, T)
  for (int64_t t = 0; t < T; ++t) {
    const scalar_t* __restrict__ row = spec + 2 * t * F;
    for (int64_t f = 0; f < F; ++f) power[f] = row[2 * f] * row[2 * f] + row[2 * f + 1] * row[2 * f + 1];
    for (int64_t m = 0; m < M; ++m) {
      const scalar_t* __restrict__ p = power + tab.mel_bands[2 * m];
      const scalar_t* __restrict__ wm = tab.mel_weights + m * s.band_width;
      const int64_t n = tab.mel_bands[2 * m + 1] - tab.mel_bands[2 * m];
      scalar_t acc = 0;
      for (int64_t j = 0; j < n; ++j) acc += wm[j] * p[j];
      log_mel[m * T + t] = std::max(amin, acc);
    }
  }
  // dB: 10 log10(max(amin, S)) - 10 log10(max(amin, ref)), then the clip's own top_db floor
  log_inplace(log_mel, M * T);
  const scalar_t db_per_neper = static_cast<scalar_t>(10.0 / std::log(10.0));
  const scalar_t ref_db = static_cast<scalar_t>(s.ref_db);
  scalar_t peak = -std::numeric_limits<scalar_t>::infinity();
#pragma omp simd reduction(max : peak)
  for (int64_t i = 0; i < M * T; ++i) {
    const scalar_t v = db_per_neper * log_mel[i] - ref_db;
    log_mel[i] = v;
    peak = peak > v ? peak : v;
  }
  if (s.floor) {
    const scalar_t floor = peak - static_cast<scalar_t>(s.top_db);
    for (int64_t i = 0; i < M * T; ++i) log_mel[i] = log_mel[i] > floor ? log_mel[i] : floor;
  }
  // DCT-II (ortho): mfcc[k, :] = sum_m dct[k, m] log_mel[m, :], in blocks of frames held in registers
  constexpr int64_t block = 256 / sizeof(scalar_t);
  scalar_t* __restrict__ mfcc = out;
  for (int64_t k = 0; k < K; ++k) {
    const scalar_t* __restrict__ dk = tab.dct + k * M;
    for (int64_t t0 = 0; t0 < T; t0 += block) {
      const int64_t n = std::min(block, T - t0);
      scalar_t acc[block] = {};
      for (int64_t m = 0; m < M; ++m) {
        const scalar_t d = dk[m];
        const scalar_t* __restrict__ lm = log_mel + m * T + t0;
        for (int64_t u = 0; u < n; ++u) acc[u] += d * lm[u];
      }
      std::copy(acc, acc + n, mfcc + k * T + t0);
    }
  }
  if (!s.with_deltas) return;
  // Savitzky-Golay deltas along time: the interior frames share one centred filter (a register-blocked
  // sweep); the edge frames use their own rows of the banded matrix
  const int64_t W = s.delta_width, half = W / 2, span = std::min(W, T);
  for (int order = 0; order < 2; ++order) {
    const scalar_t* __restrict__ coef = tab.delta_coef + order * W * T;       // (W, T)
    scalar_t* __restrict__ dst = out + (order + 1) * K * T;
    for (int64_t k = 0; k < K; ++k) {
      const scalar_t* __restrict__ src = mfcc + k * T;
      scalar_t* __restrict__ o = dst + k * T;
      for (int64_t t0 = s.interior_lo; t0 < s.interior_hi; t0 += block) {
        const int64_t n = std::min(block, s.interior_hi - t0);
        scalar_t acc[block] = {};
        for (int64_t j = 0; j < W; ++j) {
          const scalar_t c = coef[j * T + s.interior_lo];
          const scalar_t* __restrict__ v = src + t0 + j - half;
          for (int64_t u = 0; u < n; ++u) acc[u] += c * v[u];
        }
        std::copy(acc, acc + n, o + t0);
      }
      for (int64_t t = 0; t < T; ++t) {
        if (t == s.interior_lo) t = s.interior_hi;
        if (t >= T) break;
        const scalar_t* __restrict__ v = src + tab.delta_start[t];
        scalar_t acc = 0;
        for (int64_t j = 0; j < span; ++j) acc += coef[j * T + t] * v[j];
        o[t] = acc;
      }
    }
  }
}

template <typename scalar_t>
void run(const at::Tensor& waves, const Tables<scalar_t>& tab, const Sizes& s, at::Tensor& out, int64_t requested) {
  const int64_t batch = waves.size(0);
  const int64_t frame_elems = s.n_frames * s.n_fft, spec_elems = 2 * s.n_frames * s.n_freqs;
  const int64_t clip_bytes = (frame_elems + spec_elems) * int64_t(sizeof(scalar_t));
  const int64_t group = clips_per_group(requested, clip_bytes, batch);
  const int64_t out_elems = (s.with_deltas ? 3 : 1) * s.n_mfcc * s.n_frames;
  const scalar_t* x = waves.data_ptr<scalar_t>();
  scalar_t* y = out.data_ptr<scalar_t>();
  const int64_t n_groups = (batch + group - 1) / group;
  const at::TensorOptions real_opts = waves.options();
  parallel_over(n_groups, 1, [&](int64_t g0, int64_t g1) {
    const SingleThreadedFFT fft_on_this_thread;
    // per-task scratch, allocated once per call and reused by every group of the task
    const int64_t most = std::min(group, batch);
    at::Tensor frames = at::zeros({most, s.n_frames, s.n_fft}, real_opts);   // taps outside the window stay 0
    std::vector<scalar_t> work(s.n_freqs + s.n_mels * s.n_frames);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t c0 = g * group, n = std::min(group, batch - c0);
      const at::Tensor fr = frames.narrow(0, 0, n);
      scalar_t* fp = fr.data_ptr<scalar_t>();
      for (int64_t i = 0; i < n; ++i) frame_clip(x + (c0 + i) * s.length, tab, s, fp + i * frame_elems);
      const at::Tensor spec = at::_fft_r2c(fr, {2}, /*normalization=none*/ 0, /*onesided=*/true);
      TORCH_CHECK(spec.is_contiguous(), "rfft returned a non-contiguous spectrum");
      const scalar_t* sp_ptr = reinterpret_cast<const scalar_t*>(spec.data_ptr());
      for (int64_t i = 0; i < n; ++i)
        features_of_clip(sp_ptr + i * spec_elems, tab, s, work.data(), y + (c0 + i) * out_elems);
    }
  });
}

}  // namespace

at::Tensor fd_mfcc_cpu(const at::Tensor& waves, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
                       const at::Tensor& mel_bands, const at::Tensor& mel_weights, const at::Tensor& dct,
                       const at::Tensor& delta_start, const at::Tensor& delta_coef, int64_t n_frames,
                       int64_t hop_length, double preemphasis, double amin, double ref_db,
                       std::optional<double> top_db, bool with_deltas, int64_t group) {
  check_cpu_contiguous(waves, "waves");
  check_cpu_contiguous(window, "window");
  check_cpu_contiguous(mel_bands, "mel_bands");
  check_cpu_contiguous(mel_weights, "mel_weights");
  check_cpu_contiguous(dct, "dct");
  check_cpu_contiguous(delta_start, "delta_start");
  check_cpu_contiguous(delta_coef, "delta_coef");
  TORCH_CHECK(waves.dim() == 2 && waves.size(0) > 0 && waves.size(1) > 0, "waves must be (B, L) with B, L > 0, got ",
              waves.sizes());
  const at::ScalarType dtype = waves.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "waves must be float32 or float64, got ", dtype);
  check_dtype(window, dtype, "window");
  check_dtype(mel_weights, dtype, "mel_weights");
  check_dtype(dct, dtype, "dct");
  check_dtype(delta_coef, dtype, "delta_coef");
  check_dtype(mel_bands, at::kLong, "mel_bands");
  check_dtype(delta_start, at::kLong, "delta_start");
  TORCH_CHECK(hop_length > 0 && n_frames > 0, "need hop_length > 0 and n_frames > 0, got ", hop_length, " and ",
              n_frames);
  TORCH_CHECK(group >= 0, "group must be >= 0 (0: automatic), got ", group);

  Sizes s{};
  s.length = waves.size(1);
  s.n_fft = window.numel();
  s.hop = hop_length;
  s.n_frames = n_frames;
  s.n_freqs = s.n_fft / 2 + 1;
  check_support(win_lo, win_hi, s.n_fft);
  s.win_lo = win_lo;
  s.win_hi = win_hi;
  TORCH_CHECK(mel_weights.dim() == 2 && mel_bands.dim() == 2 && mel_bands.size(1) == 2 &&
                  mel_bands.size(0) == mel_weights.size(0),
              "mel_bands must be (n_mels, 2) and mel_weights (n_mels, W), got ", mel_bands.sizes(), " and ",
              mel_weights.sizes());
  s.n_mels = mel_weights.size(0);
  s.band_width = mel_weights.size(1);
  const int64_t* bands = mel_bands.data_ptr<int64_t>();
  for (int64_t m = 0; m < s.n_mels; ++m)
    TORCH_CHECK(0 <= bands[2 * m] && bands[2 * m] <= bands[2 * m + 1] && bands[2 * m + 1] <= s.n_freqs &&
                    bands[2 * m + 1] - bands[2 * m] <= s.band_width,
                "mel band ", m, " [", bands[2 * m], ", ", bands[2 * m + 1], ") is outside the ", s.n_freqs,
                " FFT bins or wider than ", s.band_width);
  TORCH_CHECK(dct.dim() == 2 && dct.size(1) == s.n_mels, "dct must be (n_mfcc, n_mels=", s.n_mels, "), got ",
              dct.sizes());
  s.n_mfcc = dct.size(0);
  s.preemphasis = preemphasis;
  s.amin = amin;
  s.ref_db = ref_db;
  s.floor = top_db.has_value();
  s.top_db = top_db.value_or(0.0);
  s.with_deltas = with_deltas;
  if (with_deltas) {
    TORCH_CHECK(delta_coef.dim() == 3 && delta_coef.size(0) == 2 && delta_coef.size(2) == s.n_frames &&
                    delta_start.numel() == s.n_frames,
                "delta_coef must be (2, W, T=", s.n_frames, ") and delta_start (T,), got ", delta_coef.sizes(),
                " and ", delta_start.sizes());
    s.delta_width = delta_coef.size(1);
    TORCH_CHECK(s.delta_width % 2 == 1, "delta width must be odd, got ", s.delta_width);
    const int64_t W = s.delta_width, T = s.n_frames, half = W / 2;
    const int64_t* start = delta_start.data_ptr<int64_t>();
    for (int64_t t = 0; t < T; ++t)
      TORCH_CHECK(start[t] >= 0 && start[t] + std::min(W, T) <= T, "delta window of frame ", t, " starts at ",
                  start[t], ", outside the ", T, " frames");
    // interior: the frames whose window is centred on them, with the coefficients of the first such frame
    s.interior_lo = s.interior_hi = T;
    if (T >= W) {
      s.interior_lo = half;
      s.interior_hi = T - half;
      AT_DISPATCH_FLOATING_TYPES(dtype, "delta_interior", [&] {
        const scalar_t* coef = delta_coef.data_ptr<scalar_t>();
        for (int64_t t = s.interior_lo; t < s.interior_hi; ++t) {
          bool shared = start[t] == t - half;
          for (int64_t i = 0; i < 2 * W && shared; ++i) shared = coef[i * T + t] == coef[i * T + s.interior_lo];
          if (!shared) {   // not a plain Savitzky-Golay matrix: every frame takes its own row
            s.interior_lo = s.interior_hi = T;
            break;
          }
        }
      });
    }
  }

  at::Tensor out = with_deltas ? at::empty({waves.size(0), 3, s.n_mfcc, s.n_frames}, waves.options())
                               : at::empty({waves.size(0), s.n_mfcc, s.n_frames}, waves.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "fd_mfcc_cpu", [&] {
    const Tables<scalar_t> tab{window.data_ptr<scalar_t>(), bands, mel_weights.data_ptr<scalar_t>(),
                               dct.data_ptr<scalar_t>(), with_deltas ? delta_start.data_ptr<int64_t>() : nullptr,
                               with_deltas ? delta_coef.data_ptr<scalar_t>() : nullptr};
    run<scalar_t>(waves, tab, s, out, group);
  });
  return out;
}

}  // namespace cpu
}  // namespace ddfad

TORCH_LIBRARY_IMPL(ddfad, CPU, m) { m.impl("fd_mfcc", &ddfad::cpu::fd_mfcc_cpu); }
