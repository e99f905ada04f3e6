// torch bindings of the fast Griffin-Lim CUDA kernels: CUDA implementations of ddfad::gla_step and
// ddfad::overlap_add (whose schemas and Meta kernels csrc/cpu/ops.cpp defines for every build), and the
// CUDA-only operators ddfad::overlap_add_out and ddfad::gla_fused_step (schemas and Meta kernels here, so
// they trace under torch.compile). Every launch's error is checked; nothing synchronises with the host.
#include <limits>
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

// One fused fast Griffin-Lim iteration (power-of-two n_fft): x_out <- step(STFT(ISTFT(x_in)), prev),
// prev <- STFT(ISTFT(x_in)). x_in, x_out, prev complex (B, T, F); magnitude real (B, T, F); window
// (n_fft); inv_envelope (n_fft + hop*(T-1)); twiddle (n_fft/2, 2) real: exp(-2 pi i k / n_fft).
// tile_frames: output frames per block, 0 = the launcher's choice; max_radix: the largest FFT pass (2, 4,
// 8 or 16 points; 0 = 4: radix 16 needs 128 registers a thread in float32, radix 8 about 71; on an H100
// radix 4 was fastest in 3 of the 4 cases of bench/gpu_bench.py, 2026-11-25).
void gla_fused_step_cuda(const at::Tensor& x_in, at::Tensor x_out, at::Tensor prev, const at::Tensor& magnitude,
                         const at::Tensor& window, const at::Tensor& inv_envelope, const at::Tensor& twiddle,
                         int64_t n_fft, int64_t hop_length, int64_t length, double momentum, int64_t tile_frames,
                         int64_t max_radix) {
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{x_in, "x_in"}, {x_out, "x_out"},
                                {prev, "prev"}, {magnitude, "magnitude"}, {window, "window"},
                                {inv_envelope, "inv_envelope"}, {twiddle, "twiddle"}}) {
    check_input(t, name);
  }
  TORCH_CHECK(magnitude.dim() == 3, "magnitude must be (B, T, F), got ", magnitude.sizes());
  const int64_t batch = magnitude.size(0), n_frames = magnitude.size(1), n_freqs = magnitude.size(2);
  if (max_radix == 0) max_radix = 4;
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
  TORCH_CHECK(window.numel() == n_fft && twiddle.numel() == n_fft &&
                  inv_envelope.numel() == n_fft + hop_length * (n_frames - 1),
              "window (n_fft), twiddle (n_fft/2, 2) or inv_envelope (n_fft + hop*(T-1)) has the wrong size");
  const auto real = magnitude.scalar_type();
  TORCH_CHECK(real == at::kFloat || real == at::kDouble, "gla_fused_step needs float32 or float64, got ", real);
  const auto cplx = real == at::kFloat ? at::kComplexFloat : at::kComplexDouble;
  TORCH_CHECK(x_in.scalar_type() == cplx && x_out.scalar_type() == cplx && prev.scalar_type() == cplx &&
                  window.scalar_type() == real && inv_envelope.scalar_type() == real &&
                  twiddle.scalar_type() == real,
              "spectra must be ", cplx, " and window, inv_envelope, twiddle ", real);
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
                   window.data_ptr<float>(), inv_envelope.data_ptr<float>(), twiddle.data_ptr<float>(), batch,
                   n_frames, n_fft, hop_length, length, static_cast<float>(coef), std::numeric_limits<float>::min(),
                   tile, max_radix, stream),
               "gla_fused_step");
  } else {
    check_cuda(ddfad::launch_gla_fused_step<double>(
                   real_ptr<double>(x_in), real_ptr<double>(x_out), real_ptr<double>(prev),
                   magnitude.data_ptr<double>(), window.data_ptr<double>(), inv_envelope.data_ptr<double>(),
                   twiddle.data_ptr<double>(), batch, n_frames, n_fft, hop_length, length, coef,
                   std::numeric_limits<double>::min(), tile, max_radix, stream),
               "gla_fused_step");
  }
}


void overlap_add_out_meta(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, bool,
                          at::Tensor) {}

void gla_fused_step_meta(const at::Tensor&, at::Tensor, at::Tensor, const at::Tensor&, const at::Tensor&,
                         const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t, double, int64_t, int64_t) {}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ddfad, m) {
  m.def("overlap_add_out(Tensor frames, Tensor window, Tensor inv_envelope, int hop_length, int length, "
        "bool reframe, Tensor(a!) out) -> ()");
  m.def("gla_fused_step(Tensor x_in, Tensor(a!) x_out, Tensor(b!) prev, Tensor magnitude, Tensor window, "
        "Tensor inv_envelope, Tensor twiddle, int n_fft, int hop_length, int length, float momentum, "
        "int tile_frames, int max_radix) -> ()");
}

TORCH_LIBRARY_IMPL(ddfad, CUDA, m) {
  m.impl("gla_step", &gla_step_cuda);
  m.impl("overlap_add", &overlap_add_cuda);
  m.impl("overlap_add_out", &overlap_add_out_cuda);
  m.impl("gla_fused_step", &gla_fused_step_cuda);
}

TORCH_LIBRARY_IMPL(ddfad, Meta, m) {
  m.impl("overlap_add_out", &overlap_add_out_meta);
  m.impl("gla_fused_step", &gla_fused_step_meta);
}
