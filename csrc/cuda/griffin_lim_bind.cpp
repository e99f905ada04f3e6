// torch bindings of the fast Griffin-Lim CUDA kernels: CUDA implementations of ddfad::griffin_lim (the whole
// loop), ddfad::gla_step and ddfad::overlap_add (whose schemas and Meta kernels csrc/cpu/ops.cpp defines for
// every build, beside their CPU implementations: one schema per operation, dispatched by device), and the
// CUDA-only operators ddfad::overlap_add_out and ddfad::gla_fused_step (schemas and Meta kernels here, so
// they trace under torch.compile). Every launch's error is checked; nothing synchronises with the host.
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "griffin_lim_kernels.h"

namespace {

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

void check_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

template <typename S>
S* real_ptr(const at::Tensor& t) {
  return reinterpret_cast<S*>(t.data_ptr());
}

// x <- magnitude * a / (|a| + tiny), a = cur - momentum / (1 + momentum) * prev; x, cur, prev complex
// (B, T, F), magnitude real (B, T, F) of the same precision. Bin 0 of each row is stored real.
void gla_step_cuda(at::Tensor x, const at::Tensor& cur, const at::Tensor& prev, const at::Tensor& magnitude,
                   double momentum) {
  check_input(x, "x");
  check_input(cur, "cur");
  check_input(prev, "prev");
  check_input(magnitude, "magnitude");
  TORCH_CHECK(x.is_complex() && cur.scalar_type() == x.scalar_type() && prev.scalar_type() == x.scalar_type(),
              "x, cur, prev must share one complex dtype");
  TORCH_CHECK(cur.numel() == x.numel() && prev.numel() == x.numel() && magnitude.numel() == x.numel(),
              "x, cur, prev, magnitude must have the same number of elements");
  TORCH_CHECK(magnitude.dim() >= 1 && magnitude.size(-1) > 0, "magnitude must be (..., F)");
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = magnitude.numel();
  const int64_t n_freqs = magnitude.size(-1);
  const double coef = momentum / (1.0 + momentum);
  if (x.scalar_type() == at::kComplexFloat) {
    TORCH_CHECK(magnitude.scalar_type() == at::kFloat, "magnitude must be float32 for complex64 spectra");
    check_cuda(ddfad::launch_gla_step<float>(real_ptr<float>(x), real_ptr<float>(cur), real_ptr<float>(prev),
                                             magnitude.data_ptr<float>(), n, n_freqs, static_cast<float>(coef),
                                             std::numeric_limits<float>::min(), stream),
               "gla_step");
  } else {
    TORCH_CHECK(x.scalar_type() == at::kComplexDouble && magnitude.scalar_type() == at::kDouble,
                "gla_step needs complex64/float32 or complex128/float64, got ", x.scalar_type());
    check_cuda(ddfad::launch_gla_step<double>(real_ptr<double>(x), real_ptr<double>(cur), real_ptr<double>(prev),
                                              magnitude.data_ptr<double>(), n, n_freqs, coef,
                                              std::numeric_limits<double>::min(), stream),
               "gla_step");
  }
}

std::vector<int64_t> overlap_add_shape(const at::Tensor& frames, int64_t length, bool reframe) {
  TORCH_CHECK(frames.dim() == 3, "frames must be (B, T, n_fft), got ", frames.sizes());
  if (reframe) return {frames.size(0), frames.size(1), frames.size(2)};
  return {frames.size(0), length};
}

void overlap_add_into(const at::Tensor& frames, const at::Tensor& window, const at::Tensor& inv_envelope,
                      int64_t hop_length, int64_t length, bool reframe, at::Tensor& out) {
  check_input(frames, "frames");
  check_input(window, "window");
  check_input(inv_envelope, "inv_envelope");
  check_input(out, "out");
  const int64_t batch = frames.size(0), n_frames = frames.size(1), n_fft = frames.size(2);
  TORCH_CHECK(hop_length > 0 && length > 0, "hop_length and length must be > 0");
  TORCH_CHECK(n_frames * n_fft < (int64_t{1} << 31) && n_fft + hop_length * (n_frames - 1) < (int64_t{1} << 31) &&
                  length < (int64_t{1} << 31),
              "overlap_add: clip too long for 32-bit sample positions");
  TORCH_CHECK(window.numel() == n_fft, "window has ", window.numel(), " samples, expected n_fft = ", n_fft);
  TORCH_CHECK(inv_envelope.numel() == n_fft + hop_length * (n_frames - 1), "inv_envelope has ",
              inv_envelope.numel(), " samples, expected ", n_fft + hop_length * (n_frames - 1));
  TORCH_CHECK(window.scalar_type() == frames.scalar_type() && inv_envelope.scalar_type() == frames.scalar_type() &&
                  out.scalar_type() == frames.scalar_type(),
              "frames, window, inv_envelope, out must share one dtype");
  TORCH_CHECK(out.sizes() == at::IntArrayRef(overlap_add_shape(frames, length, reframe)), "out has shape ",
              out.sizes(), ", expected ", at::IntArrayRef(overlap_add_shape(frames, length, reframe)));
  const c10::cuda::CUDAGuard guard(frames.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (frames.scalar_type() == at::kFloat) {
    check_cuda(ddfad::launch_overlap_add<float>(frames.data_ptr<float>(), window.data_ptr<float>(),
                                                inv_envelope.data_ptr<float>(), out.data_ptr<float>(), batch,
                                                n_frames, n_fft, hop_length, length, reframe, stream),
               "overlap_add");
  } else {
    TORCH_CHECK(frames.scalar_type() == at::kDouble, "overlap_add needs float32 or float64, got ",
                frames.scalar_type());
    check_cuda(ddfad::launch_overlap_add<double>(frames.data_ptr<double>(), window.data_ptr<double>(),
                                                 inv_envelope.data_ptr<double>(), out.data_ptr<double>(), batch,
                                                 n_frames, n_fft, hop_length, length, reframe, stream),
               "overlap_add");
  }
}

// Inverse STFT of time frames (B, T, n_fft) as a gather; see griffin_lim_kernels.h. The schema (shared with the
// CPU kernel) passes the window's non-zero taps [win_lo, win_hi); the gather reads every tap (zero outside them).
at::Tensor overlap_add_cuda(const at::Tensor& frames, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
                            const at::Tensor& inv_envelope, int64_t hop_length, int64_t length, bool reframe) {
  TORCH_CHECK(0 <= win_lo && win_lo <= win_hi && win_hi <= window.numel(), "window support [", win_lo, ", ", win_hi,
              ") is outside the window's ", window.numel(), " taps");
  at::Tensor out = at::empty(overlap_add_shape(frames, length, reframe), frames.options());
  overlap_add_into(frames, window, inv_envelope, hop_length, length, reframe, out);
  return out;
}

void overlap_add_out_cuda(const at::Tensor& frames, const at::Tensor& window, const at::Tensor& inv_envelope,
                          int64_t hop_length, int64_t length, bool reframe, at::Tensor out) {
  overlap_add_into(frames, window, inv_envelope, hop_length, length, reframe, out);
}

constexpr int64_t kDefaultRadix = 4;   // radix 16 needs 128 registers a thread in float32, radix 8 about 71; on an
                                       // H100 radix 4 was fastest in 3 of the 4 cases of bench/gpu_bench.py

// Whether the fused iteration runs this size: power-of-two n_fft and a one-frame tile that fits the device.
bool fused_supported(int64_t n_fft, int64_t hop_length, int64_t n_frames, int64_t length, int64_t element_size,
                     int device) {
  if (!ddfad::gla_fused_fft_supported(n_fft, kDefaultRadix)) return false;
  if (n_fft + hop_length * (n_frames - 1) >= (int64_t{1} << 31) || length >= (int64_t{1} << 31)) return false;
  int smem_optin = 0;
  check_cuda(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
             "cudaDeviceGetAttribute");
  return ddfad::gla_fused_smem_bytes(n_fft, hop_length, 1, element_size) <= smem_optin;
}

// One fused fast Griffin-Lim iteration (power-of-two n_fft): x_out <- step(STFT(ISTFT(x_in)), prev),
// prev <- STFT(ISTFT(x_in)). x_in, x_out, prev complex (B, T, F); magnitude real (B, T, F); window
// (n_fft); inv_envelope (n_fft + hop*(T-1)). tile_frames: output frames per block, 0 = the launcher's
// choice; max_radix: the largest FFT pass (2, 4, 8 or 16 points; 0 = kDefaultRadix).
void gla_fused_step_cuda(const at::Tensor& x_in, at::Tensor x_out, at::Tensor prev, const at::Tensor& magnitude,
                         const at::Tensor& window, const at::Tensor& inv_envelope, int64_t n_fft, int64_t hop_length,
                         int64_t length, double momentum, int64_t tile_frames, int64_t max_radix) {
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{x_in, "x_in"}, {x_out, "x_out"},
                                {prev, "prev"}, {magnitude, "magnitude"}, {window, "window"},
                                {inv_envelope, "inv_envelope"}}) {
    check_input(t, name);
  }
  TORCH_CHECK(magnitude.dim() == 3, "magnitude must be (B, T, F), got ", magnitude.sizes());
  const int64_t batch = magnitude.size(0), n_frames = magnitude.size(1), n_freqs = magnitude.size(2);
  if (max_radix == 0) max_radix = kDefaultRadix;
  TORCH_CHECK(ddfad::gla_fused_fft_supported(n_fft, max_radix), "gla_fused_step needs a power-of-two n_fft in [4, ",
              "8192] whose FFT fits passes of at most ", max_radix, " points, got n_fft = ", n_fft);
  TORCH_CHECK(n_fft + hop_length * (magnitude.size(1) - 1) < (int64_t{1} << 31) && length < (int64_t{1} << 31),
              "gla_fused_step: clip too long for 32-bit sample positions");
  TORCH_CHECK(n_freqs == n_fft / 2 + 1, "magnitude has ", n_freqs, " bins, expected n_fft/2+1 = ", n_fft / 2 + 1);
  TORCH_CHECK(hop_length > 0 && length > 0 && tile_frames >= 0, "need hop_length > 0, length > 0, tile_frames >= 0");
  TORCH_CHECK(x_in.sizes() == magnitude.sizes() && x_out.sizes() == magnitude.sizes() &&
                  prev.sizes() == magnitude.sizes(),
              "x_in, x_out, prev must have magnitude's shape ", magnitude.sizes());
  TORCH_CHECK(!x_out.is_same(x_in), "x_out must be a different buffer from x_in");
  TORCH_CHECK(window.numel() == n_fft && inv_envelope.numel() == n_fft + hop_length * (n_frames - 1),
              "window (n_fft) or inv_envelope (n_fft + hop*(T-1)) has the wrong size");
  const auto real = magnitude.scalar_type();
  TORCH_CHECK(real == at::kFloat || real == at::kDouble, "gla_fused_step needs float32 or float64, got ", real);
  const auto cplx = real == at::kFloat ? at::kComplexFloat : at::kComplexDouble;
  TORCH_CHECK(x_in.scalar_type() == cplx && x_out.scalar_type() == cplx && prev.scalar_type() == cplx &&
                  window.scalar_type() == real && inv_envelope.scalar_type() == real,
              "spectra must be ", cplx, " and window, inv_envelope ", real);
  const c10::cuda::CUDAGuard guard(magnitude.device());
  const int64_t tile = tile_frames > 0 ? tile_frames
                                       : ddfad::gla_fused_default_tile(n_fft, hop_length, magnitude.element_size());
  const int64_t smem = ddfad::gla_fused_smem_bytes(n_fft, hop_length, tile, magnitude.element_size());
  int smem_optin = 0;
  check_cuda(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, magnitude.get_device()),
             "cudaDeviceGetAttribute");
  TORCH_CHECK(smem <= smem_optin, "gla_fused_step: ", tile, " frames per block need ", smem,
              " bytes of shared memory, the device allows ", smem_optin);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const double coef = momentum / (1.0 + momentum);
  if (real == at::kFloat) {
    check_cuda(ddfad::launch_gla_fused_step<float>(
                   real_ptr<float>(x_in), real_ptr<float>(x_out), real_ptr<float>(prev), magnitude.data_ptr<float>(),
                   window.data_ptr<float>(), inv_envelope.data_ptr<float>(), batch, n_frames, n_fft, hop_length,
                   length, static_cast<float>(coef), std::numeric_limits<float>::min(), tile, max_radix, stream),
               "gla_fused_step");
  } else {
    check_cuda(ddfad::launch_gla_fused_step<double>(
                   real_ptr<double>(x_in), real_ptr<double>(x_out), real_ptr<double>(prev),
                   magnitude.data_ptr<double>(), window.data_ptr<double>(), inv_envelope.data_ptr<double>(), batch,
                   n_frames, n_fft, hop_length, length, coef, std::numeric_limits<double>::min(), tile, max_radix,
                   stream),
               "gla_fused_step");
  }
}

// The real part only of the DC bin (and of the Nyquist bin for even n_fft) of spectra (B, T, F): an inverse real
// FFT reads nothing else there.
void zero_edge_imag(at::Tensor& x, int64_t n_fft) {
  at::Tensor im = at::view_as_real(x).select(-1, 1);
  im.select(2, 0).zero_();
  if (n_fft % 2 == 0) im.select(2, x.size(2) - 1).zero_();
}

// ddfad::griffin_lim on CUDA: the whole fast Griffin-Lim loop (librosa.griffinlim semantics, center=True):
// magnitude (B, F, T) float32/float64, init_phase (B, F, T) complex unit phasors -> (B, length). Power-of-two
// n_fft runs one fused kernel per iteration (36 bytes a bin); other sizes cuFFT with the step and overlap-add
// kernels. win_lo / win_hi and `group` concern the CPU kernel only.
at::Tensor griffin_lim_cuda(const at::Tensor& magnitude, const at::Tensor& init_phase, const at::Tensor& window,
                            int64_t win_lo, int64_t win_hi, const at::Tensor& inv_envelope, int64_t hop_length,
                            int64_t n_iter, double momentum, int64_t length, int64_t /*group*/) {
  TORCH_CHECK(magnitude.is_cuda() && magnitude.dim() == 3, "magnitude must be a (B, F, T) CUDA tensor, got ",
              magnitude.sizes(), " on ", magnitude.device());
  const auto real = magnitude.scalar_type();
  TORCH_CHECK(real == at::kFloat || real == at::kDouble, "griffin_lim needs float32 or float64, got ", real);
  const auto cplx = real == at::kFloat ? at::kComplexFloat : at::kComplexDouble;
  TORCH_CHECK(init_phase.device() == magnitude.device() && init_phase.sizes() == magnitude.sizes() &&
                  init_phase.is_complex(),
              "init_phase must be complex, of magnitude's shape and on its device");
  const int64_t n_fft = window.numel();
  const int64_t batch = magnitude.size(0), n_freqs = magnitude.size(1), n_frames = magnitude.size(2);
  TORCH_CHECK(window.device() == magnitude.device() && window.scalar_type() == real &&
                  inv_envelope.device() == magnitude.device() && inv_envelope.scalar_type() == real,
              "window and inv_envelope must be ", real, " on ", magnitude.device());
  TORCH_CHECK(n_freqs == n_fft / 2 + 1, "magnitude has ", n_freqs, " bins, expected n_fft/2+1 = ", n_fft / 2 + 1);
  TORCH_CHECK(0 <= win_lo && win_lo <= win_hi && win_hi <= n_fft, "window support outside its taps");
  TORCH_CHECK(hop_length > 0 && length > 0 && n_iter >= 0, "need hop_length > 0, length > 0, n_iter >= 0");
  const c10::cuda::CUDAGuard guard(magnitude.device());
  const at::Tensor win = window.contiguous(), env = inv_envelope.contiguous();
  const at::Tensor mag = magnitude.transpose(1, 2).contiguous();                                  // (B, T, F)
  at::Tensor x = (init_phase.to(cplx) * magnitude).transpose(1, 2).contiguous();
  zero_edge_imag(x, n_fft);
  at::Tensor out = at::empty({batch, length}, mag.options());
  if (batch == 0) return out;
  if (fused_supported(n_fft, hop_length, n_frames, length, mag.element_size(), magnitude.get_device())) {
    at::Tensor x_next = at::empty_like(x), prev = at::zeros_like(x);
    for (int64_t i = 0; i < n_iter; ++i) {
      gla_fused_step_cuda(x, x_next, prev, mag, win, env, n_fft, hop_length, length, momentum, 0, 0);
      std::swap(x, x_next);
    }
  } else {
    at::Tensor reframed = at::empty({batch, n_frames, n_fft}, mag.options());
    at::Tensor prev = at::zeros_like(x);
    const at::Tensor env_unscaled = env / static_cast<double>(n_fft);     // for inverse FFTs without 1/n_fft
    for (int64_t i = 0; i < n_iter; ++i) {
      overlap_add_into(at::fft_irfft(x, n_fft, -1, "forward"), win, env_unscaled, hop_length, length, true, reframed);
      at::Tensor cur = at::fft_rfft(reframed, std::nullopt, -1, std::nullopt);
      gla_step_cuda(x, cur, prev, mag, momentum);
      if (n_fft % 2 == 0) at::view_as_real(x).select(-1, 1).select(2, n_freqs - 1).zero_();
      prev = cur;
    }
  }
  overlap_add_into(at::fft_irfft(x, n_fft, -1, std::nullopt), win, env, hop_length, length, false, out);
  return out;
}

void overlap_add_out_meta(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, bool,
                          at::Tensor) {}

void gla_fused_step_meta(const at::Tensor&, at::Tensor, at::Tensor, const at::Tensor&, const at::Tensor&,
                         const at::Tensor&, int64_t, int64_t, int64_t, double, int64_t, int64_t) {}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ddfad, m) {
  m.def("overlap_add_out(Tensor frames, Tensor window, Tensor inv_envelope, int hop_length, int length, "
        "bool reframe, Tensor(a!) out) -> ()");
  m.def("gla_fused_step(Tensor x_in, Tensor(a!) x_out, Tensor(b!) prev, Tensor magnitude, Tensor window, "
        "Tensor inv_envelope, int n_fft, int hop_length, int length, float momentum, int tile_frames, "
        "int max_radix) -> ()");
}

TORCH_LIBRARY_IMPL(ddfad, CUDA, m) {
  m.impl("griffin_lim", &griffin_lim_cuda);
  m.impl("gla_step", &gla_step_cuda);
  m.impl("overlap_add", &overlap_add_cuda);
  m.impl("overlap_add_out", &overlap_add_out_cuda);
  m.impl("gla_fused_step", &gla_fused_step_cuda);
}

TORCH_LIBRARY_IMPL(ddfad, Meta, m) {
  m.impl("overlap_add_out", &overlap_add_out_meta);
  m.impl("gla_fused_step", &gla_fused_step_meta);
}
