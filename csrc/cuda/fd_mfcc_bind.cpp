// torch bindings of the FD-MFCC CUDA kernels: operators ddfad::fd_mfcc_fused (power-of-two n_fft, no
// cuFFT), ddfad::frame_waves and ddfad::mfcc_post (any n_fft, around torch.fft.rfft). CUDA and Meta
// implementations, so they trace under torch.compile. Every launch's error is checked; nothing
// synchronises with the host. The frame count and every table are arguments (ddfad_fast/dsp.py
// feature_tables); nothing here re-derives them.
#include <optional>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fd_mfcc_kernels.h"

namespace {

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

void check_input(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

// The feature tables of mfcc_post and fd_mfcc_fused: mel (n_mels, n_freqs) float32, bands (n_mels, 2)
// int32, dct (n_mfcc, n_mels) float32, delta_start (T,) int32, delta_coef (2, W, T) float32; returns n_mels.
int64_t check_tables(const at::Tensor& mel, const at::Tensor& bands, const at::Tensor& dct,
                     const at::Tensor& delta_start, const at::Tensor& delta_coef, int64_t n_freqs, int64_t n_frames,
                     std::optional<double> top_db) {
  check_input(mel, "mel", at::kFloat);
  check_input(bands, "bands", at::kInt);
  check_input(dct, "dct", at::kFloat);
  check_input(delta_start, "delta_start", at::kInt);
  check_input(delta_coef, "delta_coef", at::kFloat);
  TORCH_CHECK(n_frames > 0, "need at least one frame");
  TORCH_CHECK(mel.dim() == 2 && mel.size(1) == n_freqs, "mel must be (n_mels, ", n_freqs, "), got ", mel.sizes());
  const int64_t n_mels = mel.size(0);
  TORCH_CHECK(bands.dim() == 2 && bands.size(0) == n_mels && bands.size(1) == 2, "bands must be (n_mels, 2)");
  TORCH_CHECK(dct.dim() == 2 && dct.size(1) == n_mels, "dct must be (n_mfcc, n_mels), got ", dct.sizes());
  TORCH_CHECK(delta_coef.dim() == 3 && delta_coef.size(0) == 2 && delta_coef.size(2) == n_frames &&
                  delta_start.dim() == 1 && delta_start.size(0) == n_frames,
              "delta_coef must be (2, W, T=", n_frames, ") and delta_start (T,), got ", delta_coef.sizes(), " and ",
              delta_start.sizes());
  TORCH_CHECK(!top_db.has_value() || *top_db >= 0.0, "top_db must be >= 0 or None");
  return n_mels;
}

// waves (B, L) float32 -> frames (B * T, n_fft), T = n_frames: librosa pre-emphasis (coefficient
// `preemphasis`, 0 = off), centre zero padding, window (n_fft,) (win_length taps centred).
at::Tensor frame_waves_cuda(const at::Tensor& waves, const at::Tensor& window, int64_t n_frames, int64_t hop_length,
                            double preemphasis) {
  check_input(waves, "waves", at::kFloat);
  check_input(window, "window", at::kFloat);
  TORCH_CHECK(waves.dim() == 2 && waves.size(1) > 0, "waves must be (B, L) with L > 0, got ", waves.sizes());
  TORCH_CHECK(hop_length > 0 && n_frames > 0 && window.dim() == 1 && window.numel() > 0,
              "need hop_length > 0, n_frames > 0 and a 1-D window");
  const int64_t batch = waves.size(0), length = waves.size(1), n_fft = window.numel();
  const c10::cuda::CUDAGuard guard(waves.device());
  at::Tensor frames = at::empty({batch * n_frames, n_fft}, waves.options());
  check_cuda(ddfad::launch_frame_waves(waves.data_ptr<float>(), window.data_ptr<float>(), frames.data_ptr<float>(),
                                       batch, length, n_frames, n_fft, hop_length, static_cast<float>(preemphasis),
                                       c10::cuda::getCurrentCUDAStream()),
             "frame_waves");
  return frames;
}

// spec (B, T, F) complex64 (rfft of the frames) -> (B, 3, n_mfcc, T) float32: MFCC, delta, delta-delta.
// mel (n_mels, F) float32; bands (n_mels, 2) int32 non-zero bins [lo, hi) of each band; dct (n_mfcc,
// n_mels) float32; delta_start (T,) int32 and delta_coef (2, W, T) float32 (dsp.delta_bands);
// dB = 10 log10(max(mel, amin)) - ref_db, floored at the clip's maximum - top_db when top_db is given.
at::Tensor mfcc_post_cuda(const at::Tensor& spec, const at::Tensor& mel, const at::Tensor& bands,
                          const at::Tensor& dct, const at::Tensor& delta_start, const at::Tensor& delta_coef,
                          double amin, double ref_db, std::optional<double> top_db) {
  check_input(spec, "spec", at::kComplexFloat);
  TORCH_CHECK(spec.dim() == 3, "spec must be (B, T, F), got ", spec.sizes());
  const int64_t batch = spec.size(0), n_frames = spec.size(1), n_freqs = spec.size(2);
  const int64_t n_mels = check_tables(mel, bands, dct, delta_start, delta_coef, n_freqs, n_frames, top_db);
  const int64_t n_mfcc = dct.size(0);
  const c10::cuda::CUDAGuard guard(spec.device());
  const auto opts = spec.options().dtype(at::kFloat);
  at::Tensor db = at::empty({batch, n_frames, n_mels}, opts);
  at::Tensor tile_max = at::empty({batch, ddfad::mel_db_tiles(n_frames, n_freqs)}, opts);
  at::Tensor out = at::empty({batch, 3, n_mfcc, n_frames}, opts);
  check_cuda(ddfad::launch_mfcc_post(reinterpret_cast<const float*>(spec.data_ptr()), mel.data_ptr<float>(),
                                     bands.data_ptr<int>(), dct.data_ptr<float>(), delta_start.data_ptr<int>(),
                                     delta_coef.data_ptr<float>(), db.data_ptr<float>(), tile_max.data_ptr<float>(),
                                     out.data_ptr<float>(), batch, n_frames, n_freqs, n_mels, n_mfcc,
                                     delta_coef.size(1), static_cast<float>(amin),
                                     static_cast<float>(ref_db),
                                     top_db.has_value() ? static_cast<float>(*top_db) : -1.0f,
                                     c10::cuda::getCurrentCUDAStream()),
             "mfcc_post");
  return out;
}

// waves (B, L) float32 -> (B, 3, n_mfcc, T), T = n_frames, for power-of-two n_fft, without cuFFT.
// window (n_fft,), twiddle (n_fft/2, 2) float32 exp(-2 pi i k / n_fft); the rest as frame_waves and
// mfcc_post. tile_frames: frames per block of the first pass (0: the launcher's choice); max_radix: the
// largest FFT pass (2, 4, 8, 16; 0 = 8).
at::Tensor fd_mfcc_fused_cuda(const at::Tensor& waves, const at::Tensor& window, const at::Tensor& twiddle,
                              const at::Tensor& mel, const at::Tensor& bands, const at::Tensor& dct,
                              const at::Tensor& delta_start, const at::Tensor& delta_coef, int64_t n_frames,
                              int64_t hop_length, double preemphasis, double amin, double ref_db,
                              std::optional<double> top_db, int64_t tile_frames, int64_t max_radix) {
  check_input(waves, "waves", at::kFloat);
  check_input(window, "window", at::kFloat);
  check_input(twiddle, "twiddle", at::kFloat);
  if (max_radix == 0) max_radix = 8;
  TORCH_CHECK(waves.dim() == 2 && waves.size(1) > 0, "waves must be (B, L) with L > 0, got ", waves.sizes());
  const int64_t batch = waves.size(0), length = waves.size(1), n_fft = window.numel();
  TORCH_CHECK(hop_length > 0 && tile_frames >= 0, "need hop_length > 0 and tile_frames >= 0");
  TORCH_CHECK(ddfad::stft_mel_supported(n_fft, max_radix), "fd_mfcc_fused needs a power-of-two n_fft in [4, 8192] ",
              "whose FFT fits passes of at most ", max_radix, " points, got ", n_fft);
  TORCH_CHECK(twiddle.numel() == n_fft, "twiddle must be (n_fft/2, 2)");
  const int64_t n_mels = check_tables(mel, bands, dct, delta_start, delta_coef, n_fft / 2 + 1, n_frames, top_db);
  const int64_t tile = ddfad::stft_mel_tile_frames(n_fft, tile_frames);
  const c10::cuda::CUDAGuard guard(waves.device());
  const auto opts = waves.options();
  at::Tensor db = at::empty({batch, n_frames, n_mels}, opts);
  at::Tensor tile_max = at::empty({batch, (n_frames + tile - 1) / tile}, opts);
  at::Tensor out = at::empty({batch, 3, dct.size(0), n_frames}, opts);
  check_cuda(ddfad::launch_fd_mfcc_fused(waves.data_ptr<float>(), window.data_ptr<float>(), twiddle.data_ptr<float>(),
                                         mel.data_ptr<float>(), bands.data_ptr<int>(), dct.data_ptr<float>(),
                                         delta_start.data_ptr<int>(), delta_coef.data_ptr<float>(),
                                         db.data_ptr<float>(), tile_max.data_ptr<float>(), out.data_ptr<float>(), batch,
                                         length, n_frames, n_fft, hop_length, n_mels, dct.size(0), delta_coef.size(1),
                                         static_cast<float>(preemphasis), static_cast<float>(amin),
                                         static_cast<float>(ref_db),
                                         top_db.has_value() ? static_cast<float>(*top_db) : -1.0f, tile, max_radix,
                                         c10::cuda::getCurrentCUDAStream()),
             "fd_mfcc_fused");
  return out;
}

at::Tensor fd_mfcc_fused_meta(const at::Tensor& waves, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, const at::Tensor& dct, const at::Tensor&, const at::Tensor&,
                              int64_t n_frames, int64_t, double, double, double, std::optional<double>, int64_t,
                              int64_t) {
  return at::empty({waves.size(0), 3, dct.size(0), n_frames}, waves.options());
}

at::Tensor frame_waves_meta(const at::Tensor& waves, const at::Tensor& window, int64_t n_frames, int64_t, double) {
  return at::empty({waves.size(0) * n_frames, window.size(0)}, waves.options());
}

at::Tensor mfcc_post_meta(const at::Tensor& spec, const at::Tensor&, const at::Tensor&, const at::Tensor& dct,
                          const at::Tensor&, const at::Tensor&, double, double, std::optional<double>) {
  return at::empty({spec.size(0), 3, dct.size(0), spec.size(1)}, spec.options().dtype(at::kFloat));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ddfad, m) {
  m.def("fd_mfcc_fused(Tensor waves, Tensor window, Tensor twiddle, Tensor mel, Tensor bands, Tensor dct, "
        "Tensor delta_start, Tensor delta_coef, int n_frames, int hop_length, float preemphasis, float amin, "
        "float ref_db, float? top_db, int tile_frames, int max_radix) -> Tensor");
  m.def("frame_waves(Tensor waves, Tensor window, int n_frames, int hop_length, float preemphasis) -> Tensor");
  m.def("mfcc_post(Tensor spec, Tensor mel, Tensor bands, Tensor dct, Tensor delta_start, Tensor delta_coef, "
        "float amin, float ref_db, float? top_db) -> Tensor");
}

TORCH_LIBRARY_IMPL(ddfad, CUDA, m) {
  m.impl("fd_mfcc_fused", &fd_mfcc_fused_cuda);
  m.impl("frame_waves", &frame_waves_cuda);
  m.impl("mfcc_post", &mfcc_post_cuda);
}

TORCH_LIBRARY_IMPL(ddfad, Meta, m) {
  m.impl("fd_mfcc_fused", &fd_mfcc_fused_meta);
  m.impl("frame_waves", &frame_waves_meta);
  m.impl("mfcc_post", &mfcc_post_meta);
}
