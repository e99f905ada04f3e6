// Fast Griffin-Lim on the CPU. State is frame-major, spectra (B, T, F), so every FFT runs over
// contiguous rows. One iteration per group of clips: irfft -> overlap-add (scatter of the windowed
// frames, times the inverse window envelope, cropped to `length`) fused with re-framing and windowing
// -> rfft -> fused step (momentum, unit normalisation, times magnitude). Each task runs all
// iterations on its own group of clips, so the group's state stays in that core's cache.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <torch/library.h>

#include "common.h"
#include "griffin_lim.h"

namespace ddfad {
namespace cpu {
namespace {

struct OlaSizes {
  int64_t n_frames, n_fft, hop, length;
  int64_t win_lo, win_hi;   // the window's nonzero taps are [win_lo, win_hi) (dsp.window_support)
  int64_t signal_len() const { return std::max(n_fft + hop * (n_frames - 1), n_fft / 2 + length); }
};

// x[i] <- mag[i] * a / (|a| + eps), a = cur[i] - coef * prev[i], for complex bins [begin, end).
template <typename scalar_t>
void gla_step_range(scalar_t* __restrict__ x, const scalar_t* __restrict__ cur, const scalar_t* __restrict__ prev,
                    const scalar_t* __restrict__ mag, int64_t begin, int64_t end, scalar_t coef, scalar_t eps) {
  for (int64_t i = begin; i < end; ++i) {
    const scalar_t ar = cur[2 * i] - coef * prev[2 * i];
    const scalar_t ai = cur[2 * i + 1] - coef * prev[2 * i + 1];
    const scalar_t scale = mag[i] / (std::sqrt(ar * ar + ai * ai) + eps);
    x[2 * i] = ar * scale;
    x[2 * i + 1] = ai * scale;
  }
}

// One clip: frames (T, n_fft) -> signal (scratch, signal_len(), padded coordinates: sample n at n + n_fft/2,
// zero outside the `length` kept samples) -> out: the signal (length,) or its windowed frames (T, n_fft).
// Reframing writes only the window's support: the caller keeps the other taps of `out` at zero.
template <typename scalar_t>
void overlap_add_clip(const scalar_t* __restrict__ frames, const scalar_t* __restrict__ window,
                      const scalar_t* __restrict__ inv_env, const OlaSizes& s, scalar_t* __restrict__ signal,
                      scalar_t* __restrict__ out, bool reframe) {
  const int64_t total = s.signal_len(), env_len = s.n_fft + s.hop * (s.n_frames - 1);
  const int64_t half = s.n_fft / 2, stop = half + s.length;
  std::fill(signal, signal + total, scalar_t(0));
  for (int64_t t = 0; t < s.n_frames; ++t) {
    scalar_t* __restrict__ dst = signal + t * s.hop;
    const scalar_t* __restrict__ src = frames + t * s.n_fft;
    for (int64_t k = s.win_lo; k < s.win_hi; ++k) dst[k] += window[k] * src[k];
  }
  const int64_t norm_end = std::min(stop, env_len);
  for (int64_t p = half; p < norm_end; ++p) signal[p] *= inv_env[p];
  std::fill(signal, signal + half, scalar_t(0));
  std::fill(signal + stop, signal + total, scalar_t(0));
  if (reframe) {
    for (int64_t t = 0; t < s.n_frames; ++t) {
      const scalar_t* __restrict__ src = signal + t * s.hop;
      scalar_t* __restrict__ dst = out + t * s.n_fft;
      for (int64_t k = s.win_lo; k < s.win_hi; ++k) dst[k] = src[k] * window[k];
    }
  } else {
    std::copy(signal + half, signal + stop, out);
  }
}

}  // namespace

void gla_step_cpu(at::Tensor x, const at::Tensor& cur, const at::Tensor& prev, const at::Tensor& magnitude,
                  double momentum) {
  check_cpu_contiguous(x, "x");
  check_cpu_contiguous(cur, "cur");
  check_cpu_contiguous(prev, "prev");
  check_cpu_contiguous(magnitude, "magnitude");
  TORCH_CHECK(x.is_complex() && cur.scalar_type() == x.scalar_type() && prev.scalar_type() == x.scalar_type(),
              "x, cur, prev must share one complex dtype");
  TORCH_CHECK(magnitude.scalar_type() == c10::toRealValueType(x.scalar_type()),
              "magnitude must be the real dtype of x, got ", magnitude.scalar_type(), " for ", x.scalar_type());
  const int64_t n = magnitude.numel();
  TORCH_CHECK(cur.numel() == n && prev.numel() == n && x.numel() == n,
              "x, cur, prev, magnitude must have the same number of elements");
  AT_DISPATCH_FLOATING_TYPES(magnitude.scalar_type(), "gla_step_cpu", [&] {
    scalar_t* xp = reinterpret_cast<scalar_t*>(x.data_ptr());
    const scalar_t* cp = reinterpret_cast<const scalar_t*>(cur.data_ptr());
    const scalar_t* pp = reinterpret_cast<const scalar_t*>(prev.data_ptr());
    const scalar_t* mp = magnitude.data_ptr<scalar_t>();
    const scalar_t coef = static_cast<scalar_t>(momentum / (1.0 + momentum));
    parallel_over(n, 16384, [&](int64_t b, int64_t e) {
      gla_step_range(xp, cp, pp, mp, b, e, coef, std::numeric_limits<scalar_t>::min());
    });
  });
}

at::Tensor overlap_add_cpu(const at::Tensor& frames, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
                           const at::Tensor& inv_envelope, int64_t hop_length, int64_t length, bool reframe) {
  check_cpu_contiguous(frames, "frames");
  check_cpu_contiguous(window, "window");
  check_cpu_contiguous(inv_envelope, "inv_envelope");
  TORCH_CHECK(frames.dim() == 3, "frames must be (B, T, n_fft), got ", frames.sizes());
  TORCH_CHECK(hop_length > 0 && length > 0, "hop_length and length must be > 0");
  OlaSizes s{frames.size(1), frames.size(2), hop_length, length, win_lo, win_hi};
  TORCH_CHECK(window.numel() == s.n_fft, "window has ", window.numel(), " samples, expected n_fft = ", s.n_fft);
  check_support(win_lo, win_hi, s.n_fft);
  TORCH_CHECK(inv_envelope.numel() == s.n_fft + hop_length * (s.n_frames - 1), "inv_envelope has ",
              inv_envelope.numel(), " samples, expected ", s.n_fft + hop_length * (s.n_frames - 1));
  TORCH_CHECK(window.scalar_type() == frames.scalar_type() && inv_envelope.scalar_type() == frames.scalar_type(),
              "frames, window, inv_envelope must share one dtype");
  const int64_t batch = frames.size(0);
  at::Tensor out = reframe ? at::zeros_like(frames) : at::empty({batch, length}, frames.options());
  AT_DISPATCH_FLOATING_TYPES(frames.scalar_type(), "overlap_add_cpu", [&] {
    const scalar_t* fp = frames.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t in_stride = s.n_frames * s.n_fft, out_stride = reframe ? in_stride : length;
    parallel_over(batch, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> signal(s.signal_len());
      for (int64_t b = b0; b < b1; ++b)
        overlap_add_clip(fp + b * in_stride, window.data_ptr<scalar_t>(), inv_envelope.data_ptr<scalar_t>(), s,
                         signal.data(), op + b * out_stride, reframe);
    });
  });
  return out;
}

namespace {

// Real FFTs along the last axis without the copy of the *_out variants; spectra (n, T, F) complex.
at::Tensor rfft(const at::Tensor& frames) {
  at::Tensor spec = at::_fft_r2c(frames, {frames.dim() - 1}, /*normalization=none*/ 0, /*onesided=*/true);
  TORCH_CHECK(spec.is_contiguous(), "rfft returned a non-contiguous spectrum");
  return spec;
}

at::Tensor irfft(const at::Tensor& spec, int64_t n_fft) {
  at::Tensor frames = at::_fft_c2r(spec, {spec.dim() - 1}, /*normalization=by_n*/ 2, n_fft);
  TORCH_CHECK(frames.is_contiguous(), "irfft returned non-contiguous frames");
  return frames;
}

template <typename scalar_t>
void griffin_lim_run(const at::Tensor& mag, at::Tensor& state, const scalar_t* window, const scalar_t* inv_env,
                     const OlaSizes& s, int64_t n_iter, double momentum, int64_t requested, at::Tensor& out) {
  const int64_t batch = mag.size(0), T = s.n_frames, F = s.n_fft / 2 + 1;
  const int64_t bins = T * F, frame_elems = T * s.n_fft;
  // per clip: state, previous and rebuilt spectra, magnitude, irfft frames and re-windowed frames
  const int64_t clip_bytes = (7 * bins + 2 * frame_elems) * int64_t(sizeof(scalar_t));
  const int64_t group = clips_per_group(requested, clip_bytes, batch);
  const scalar_t coef = static_cast<scalar_t>(momentum / (1.0 + momentum));
  const scalar_t eps = std::numeric_limits<scalar_t>::min();
  const int64_t n_groups = (batch + group - 1) / group;
  parallel_over(n_groups, 1, [&](int64_t g0, int64_t g1) {
    const SingleThreadedFFT fft_on_this_thread;
    const int64_t most = std::min(group, batch);
    at::Tensor reframed = at::zeros({most, T, s.n_fft}, mag.options());     // taps outside the window stay 0
    std::vector<scalar_t> signal(s.signal_len());
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t c0 = g * group, n = std::min(group, batch - c0);
      const at::Tensor x = state.narrow(0, c0, n), rf = reframed.narrow(0, 0, n);
      scalar_t* xp = reinterpret_cast<scalar_t*>(x.data_ptr());
      scalar_t* rp = rf.data_ptr<scalar_t>();
      const scalar_t* mp = mag.data_ptr<scalar_t>() + c0 * bins;
      at::Tensor prev = at::zeros_like(x);
      for (int64_t it = 0; it < n_iter; ++it) {
        const at::Tensor frames = irfft(x, s.n_fft);
        const scalar_t* fp = frames.data_ptr<scalar_t>();
        for (int64_t i = 0; i < n; ++i)
          overlap_add_clip(fp + i * frame_elems, window, inv_env, s, signal.data(), rp + i * frame_elems, true);
        const at::Tensor cur = rfft(rf);
        gla_step_range(xp, reinterpret_cast<const scalar_t*>(cur.data_ptr()),
                       reinterpret_cast<const scalar_t*>(prev.data_ptr()), mp, 0, n * bins, coef, eps);
        prev = cur;
      }
      const at::Tensor frames = irfft(x, s.n_fft);
      const scalar_t* fp = frames.data_ptr<scalar_t>();
      scalar_t* yp = out.data_ptr<scalar_t>() + c0 * s.length;
      for (int64_t i = 0; i < n; ++i)
        overlap_add_clip(fp + i * frame_elems, window, inv_env, s, signal.data(), yp + i * s.length, false);
    }
  });
}

}  // namespace

at::Tensor griffin_lim_cpu(const at::Tensor& magnitude, const at::Tensor& init_phase, const at::Tensor& window,
                           int64_t win_lo, int64_t win_hi, const at::Tensor& inv_envelope, int64_t hop_length,
                           int64_t n_iter, double momentum, int64_t length, int64_t group) {
  check_cpu_contiguous(window, "window");
  check_cpu_contiguous(inv_envelope, "inv_envelope");
  TORCH_CHECK(magnitude.device().is_cpu() && init_phase.device().is_cpu(),
              "magnitude and init_phase must be on the CPU");
  TORCH_CHECK(magnitude.dim() == 3, "magnitude must be (B, F, T), got ", magnitude.sizes());
  TORCH_CHECK(init_phase.sizes() == magnitude.sizes() && init_phase.is_complex(),
              "init_phase must be complex with the magnitude's shape ", magnitude.sizes(), ", got ",
              init_phase.scalar_type(), " ", init_phase.sizes());
  const at::ScalarType dtype = magnitude.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "magnitude must be float32 or float64, got ", dtype);
  check_dtype(window, dtype, "window");
  check_dtype(inv_envelope, dtype, "inv_envelope");
  const int64_t n_fft = window.numel(), T = magnitude.size(2);
  check_support(win_lo, win_hi, n_fft);
  TORCH_CHECK(magnitude.size(1) == n_fft / 2 + 1, "magnitude has ", magnitude.size(1),
              " frequency bins, expected n_fft // 2 + 1 = ", n_fft / 2 + 1);
  TORCH_CHECK(hop_length > 0 && length > 0 && n_iter >= 0 && momentum >= 0 && group >= 0,
              "need hop_length > 0, length > 0, n_iter >= 0, momentum >= 0, group >= 0 (0: automatic)");
  TORCH_CHECK(inv_envelope.numel() == n_fft + hop_length * (T - 1), "inv_envelope has ", inv_envelope.numel(),
              " samples, expected ", n_fft + hop_length * (T - 1));
  // frame-major state: x = init_phase * magnitude as (B, T, F)
  const at::Tensor mag = magnitude.transpose(1, 2).contiguous();
  at::Tensor state = (init_phase.to(c10::toComplexType(dtype)) * magnitude).transpose(1, 2).contiguous();
  at::Tensor out = at::empty({magnitude.size(0), length}, magnitude.options());
  const OlaSizes s{T, n_fft, hop_length, length, win_lo, win_hi};
  AT_DISPATCH_FLOATING_TYPES(dtype, "griffin_lim_cpu", [&] {
    griffin_lim_run<scalar_t>(mag, state, window.data_ptr<scalar_t>(), inv_envelope.data_ptr<scalar_t>(), s, n_iter,
                              momentum, group, out);
  });
  return out;
}

}  // namespace cpu
}  // namespace ddfad

TORCH_LIBRARY_IMPL(ddfad, CPU, m) {
  m.impl("gla_step", &ddfad::cpu::gla_step_cpu);
  m.impl("overlap_add", &ddfad::cpu::overlap_add_cpu);
  m.impl("griffin_lim", &ddfad::cpu::griffin_lim_cpu);
}
