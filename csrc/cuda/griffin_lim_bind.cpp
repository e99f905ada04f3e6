// torch bindings of the fast Griffin-Lim CUDA kernels: operators ddfad::gla_step and
// ddfad::overlap_add (CUDA and Meta implementations, so they trace under torch.compile).
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

// x <- magnitude * a / (|a| + tiny), a = cur - momentum / (1 + momentum) * prev; x, cur, prev complex
// (B, T, F), magnitude real (B, T, F) of the same precision.
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
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = magnitude.numel();
  const double coef = momentum / (1.0 + momentum);
  if (x.scalar_type() == at::kComplexFloat) {
    TORCH_CHECK(magnitude.scalar_type() == at::kFloat, "magnitude must be float32 for complex64 spectra");
    check_cuda(ddfad::launch_gla_step<float>(reinterpret_cast<float*>(x.data_ptr()),
                                             reinterpret_cast<const float*>(cur.data_ptr()),
                                             reinterpret_cast<const float*>(prev.data_ptr()),
                                             magnitude.data_ptr<float>(), n, static_cast<float>(coef),
                                             std::numeric_limits<float>::min(), stream),
               "gla_step");
  } else {
    TORCH_CHECK(x.scalar_type() == at::kComplexDouble && magnitude.scalar_type() == at::kDouble,
                "gla_step needs complex64/float32 or complex128/float64, got ", x.scalar_type());
    check_cuda(ddfad::launch_gla_step<double>(reinterpret_cast<double*>(x.data_ptr()),
                                              reinterpret_cast<const double*>(cur.data_ptr()),
                                              reinterpret_cast<const double*>(prev.data_ptr()),
                                              magnitude.data_ptr<double>(), n, coef,
                                              std::numeric_limits<double>::min(), stream),
               "gla_step");
  }
}

std::vector<int64_t> overlap_add_shape(const at::Tensor& frames, int64_t length, bool reframe) {
  TORCH_CHECK(frames.dim() == 3, "frames must be (B, T, n_fft), got ", frames.sizes());
  if (reframe) return {frames.size(0), frames.size(1), frames.size(2)};
  return {frames.size(0), length};
}

// Inverse STFT of time frames (B, T, n_fft) as a gather; see griffin_lim_kernels.h.
at::Tensor overlap_add_cuda(const at::Tensor& frames, const at::Tensor& window, const at::Tensor& inv_envelope,
                            int64_t hop_length, int64_t length, bool reframe) {
  check_input(frames, "frames");
  check_input(window, "window");
  check_input(inv_envelope, "inv_envelope");
  const int64_t batch = frames.size(0), n_frames = frames.size(1), n_fft = frames.size(2);
  TORCH_CHECK(window.numel() == n_fft, "window has ", window.numel(), " samples, expected n_fft = ", n_fft);
  TORCH_CHECK(inv_envelope.numel() == n_fft + hop_length * (n_frames - 1), "inv_envelope has ",
              inv_envelope.numel(), " samples, expected ", n_fft + hop_length * (n_frames - 1));
  TORCH_CHECK(hop_length > 0 && length > 0, "hop_length and length must be > 0");
  TORCH_CHECK(window.scalar_type() == frames.scalar_type() && inv_envelope.scalar_type() == frames.scalar_type(),
              "frames, window, inv_envelope must share one dtype");
  const c10::cuda::CUDAGuard guard(frames.device());
  at::Tensor out = at::empty(overlap_add_shape(frames, length, reframe), frames.options());
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
  return out;
}

void gla_step_meta(at::Tensor, const at::Tensor&, const at::Tensor&, const at::Tensor&, double) {}

at::Tensor overlap_add_meta(const at::Tensor& frames, const at::Tensor&, const at::Tensor&, int64_t, int64_t length,
                            bool reframe) {
  return at::empty(overlap_add_shape(frames, length, reframe), frames.options());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ddfad, m) {
  m.def("gla_step(Tensor(a!) x, Tensor cur, Tensor prev, Tensor magnitude, float momentum) -> ()");
  m.def("overlap_add(Tensor frames, Tensor window, Tensor inv_envelope, int hop_length, int length, "
        "bool reframe) -> Tensor");
}

TORCH_LIBRARY_IMPL(ddfad, CUDA, m) {
  m.impl("gla_step", &gla_step_cuda);
  m.impl("overlap_add", &overlap_add_cuda);
}

TORCH_LIBRARY_IMPL(ddfad, Meta, m) {
  m.impl("gla_step", &gla_step_meta);
  m.impl("overlap_add", &overlap_add_meta);
}
