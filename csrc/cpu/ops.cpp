// The extension module ddfad_fast._C and the schemas of its torch operators (namespace ddfad).
// Schemas and Meta (shape-only) implementations live here, built on every platform; device
// implementations register themselves beside their kernels: CPU in csrc/cpu, CUDA in csrc/cuda.
// Frame counts, window supports and every table are arguments, computed by ddfad_fast/dsp.py.
#include <optional>
#include <vector>

#include <pybind11/pybind11.h>

#include <ATen/ATen.h>
#include <torch/library.h>

namespace {

std::vector<int64_t> overlap_add_shape(const at::Tensor& frames, int64_t length, bool reframe) {
  TORCH_CHECK(frames.dim() == 3, "frames must be (B, T, n_fft), got ", frames.sizes());
  if (reframe) return {frames.size(0), frames.size(1), frames.size(2)};
  return {frames.size(0), length};
}

void gla_step_meta(at::Tensor, const at::Tensor&, const at::Tensor&, const at::Tensor&, double) {}

at::Tensor overlap_add_meta(const at::Tensor& frames, const at::Tensor&, int64_t, int64_t, const at::Tensor&, int64_t,
                            int64_t length, bool reframe) {
  return at::empty(overlap_add_shape(frames, length, reframe), frames.options());
}

at::Tensor griffin_lim_meta(const at::Tensor& magnitude, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                            const at::Tensor&, int64_t, int64_t, double, int64_t length, int64_t) {
  return at::empty({magnitude.size(0), length}, magnitude.options());
}

at::Tensor fd_mfcc_meta(const at::Tensor& waves, const at::Tensor&, int64_t, int64_t, const at::Tensor&,
                        const at::Tensor&, const at::Tensor& dct, const at::Tensor&, const at::Tensor&, int64_t frames,
                        int64_t, double, double, double, std::optional<double>, bool with_deltas, int64_t) {
  if (with_deltas) return at::empty({waves.size(0), 3, dct.size(0), frames}, waves.options());
  return at::empty({waves.size(0), dct.size(0), frames}, waves.options());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ddfad, m) {
  // x <- magnitude * a / (|a| + tiny), a = cur - momentum / (1 + momentum) * prev (in place)
  m.def("gla_step(Tensor(a!) x, Tensor cur, Tensor prev, Tensor magnitude, float momentum) -> ()");
  // inverse STFT of frames (B, T, n_fft) by overlap-add: the signal (B, length), or its re-windowed frames;
  // the window's taps outside [win_lo, win_hi) are zero (dsp.window_support)
  m.def("overlap_add(Tensor frames, Tensor window, int win_lo, int win_hi, Tensor inv_envelope, int hop_length, "
        "int length, bool reframe) -> Tensor");
  // the whole fast Griffin-Lim loop: magnitude (B, F, T), init_phase (B, F, T) complex -> (B, length)
  m.def("griffin_lim(Tensor magnitude, Tensor init_phase, Tensor window, int win_lo, int win_hi, "
        "Tensor inv_envelope, int hop_length, int n_iter, float momentum, int length, int group) -> Tensor");
  // FD-MFCC: waves (B, L) -> (B, 3, n_mfcc, n_frames), or (B, n_mfcc, n_frames) when with_deltas is false
  m.def("fd_mfcc(Tensor waves, Tensor window, int win_lo, int win_hi, Tensor mel_bands, Tensor mel_weights, "
        "Tensor dct, Tensor delta_start, Tensor delta_coef, int n_frames, int hop_length, float preemphasis, "
        "float amin, float ref_db, float? top_db, bool with_deltas, int group) -> Tensor");
}

TORCH_LIBRARY_IMPL(ddfad, Meta, m) {
  m.impl("gla_step", &gla_step_meta);
  m.impl("overlap_add", &overlap_add_meta);
  m.impl("griffin_lim", &griffin_lim_meta);
  m.impl("fd_mfcc", &fd_mfcc_meta);
}

// Importing ddfad_fast._C registers the operators above (torch.ops.ddfad.*).
PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "ddfad_fast C++ operators, registered as torch.ops.ddfad.*";
#ifdef WITH_CUDA
  module.attr("with_cuda") = true;
#else
  module.attr("with_cuda") = false;
#endif
}
