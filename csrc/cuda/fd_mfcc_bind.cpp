// CUDA implementation of the operator ddfad::fd_mfcc (schema and Meta kernel in csrc/cpu/ops.cpp, the CPU
// implementation in csrc/cpu/fd_mfcc.cpp: one schema, dispatched by device), and the CUDA-only operators that
// expose each of its kernels for tests and benchmarks: ddfad::fd_mfcc_clip (one clip per block, the shipped
// presets), ddfad::fd_mfcc_fused (tiles of frames, power-of-two n_fft), ddfad::frame_waves and
// ddfad::mfcc_post (around torch.fft.rfft, any n_fft), and ddfad::fd_mfcc_kernel, which names the kernel
// ddfad::fd_mfcc runs for a shape. Every launch's error is checked; nothing synchronises with the host. The
// frame count and every table are arguments (ddfad_fast.ops.tables); nothing here re-derives them.
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fd_mfcc_kernels.h"

namespace {

constexpr int64_t kTiledRadix = 8;   // the tiled pass's largest FFT pass (bench/gpu_bench.py sweeps it)

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

void check_input(const at::Tensor& t, const char* name, at::ScalarType dtype, const at::Device& device) {
  TORCH_CHECK(t.device() == device, name, " must be on ", device, ", got ", t.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

// The tables of ddfad::fd_mfcc (tables.feature_tables): mel_bands (n_mels, 2) int64, mel_weights (n_mels, W_mel)
// float32, dct (n_mfcc, n_mels) float32, delta_start (T,) int64, delta_coef (2, W, T) float32.
struct Tables {
  int64_t n_mels, mel_width, n_mfcc, width;
};

Tables check_tables(const at::Tensor& mel_bands, const at::Tensor& mel_weights, const at::Tensor& dct,
                    const at::Tensor& delta_start, const at::Tensor& delta_coef, int64_t n_frames,
                    std::optional<double> top_db, const at::Device& device) {
  check_input(mel_bands, "mel_bands", at::kLong, device);
  check_input(mel_weights, "mel_weights", at::kFloat, device);
  check_input(dct, "dct", at::kFloat, device);
  check_input(delta_start, "delta_start", at::kLong, device);
  check_input(delta_coef, "delta_coef", at::kFloat, device);
  TORCH_CHECK(n_frames > 0, "need at least one frame");
  TORCH_CHECK(mel_bands.dim() == 2 && mel_bands.size(1) == 2, "mel_bands must be (n_mels, 2), got ", mel_bands.sizes());
  const int64_t n_mels = mel_bands.size(0);
  TORCH_CHECK(mel_weights.dim() == 2 && mel_weights.size(0) == n_mels && mel_weights.size(1) > 0,
              "mel_weights must be (n_mels, width), got ", mel_weights.sizes());
  TORCH_CHECK(dct.dim() == 2 && dct.size(1) == n_mels, "dct must be (n_mfcc, n_mels), got ", dct.sizes());
  TORCH_CHECK(delta_coef.dim() == 3 && delta_coef.size(0) == 2 && delta_coef.size(2) == n_frames &&
                  delta_start.dim() == 1 && delta_start.size(0) == n_frames,
              "delta_coef must be (2, W, T=", n_frames, ") and delta_start (T,), got ", delta_coef.sizes(), " and ",
              delta_start.sizes());
  TORCH_CHECK(!top_db.has_value() || *top_db >= 0.0, "top_db must be >= 0 or None");
  return {n_mels, mel_weights.size(1), dct.size(0), delta_coef.size(1)};
}

void check_waves(const at::Tensor& waves, const at::Tensor& window) {
  TORCH_CHECK(waves.is_cuda(), "waves must be a CUDA tensor");
  check_input(waves, "waves", at::kFloat, waves.device());
  check_input(window, "window", at::kFloat, waves.device());
  TORCH_CHECK(waves.dim() == 2 && waves.size(1) > 0, "waves must be (B, L) with L > 0, got ", waves.sizes());
  TORCH_CHECK(window.dim() == 1 && window.numel() > 0, "window must be (n_fft,)");
}

// (B, 3, n_mfcc, T), or (B, n_mfcc, T) without deltas: float32, on batch_like's device (Meta kernels too)
at::Tensor empty_features(const at::Tensor& batch_like, int64_t n_mfcc, int64_t n_frames, bool with_deltas) {
  const auto opts = batch_like.options().dtype(at::kFloat);
  if (with_deltas) return at::empty({batch_like.size(0), 3, n_mfcc, n_frames}, opts);
  return at::empty({batch_like.size(0), n_mfcc, n_frames}, opts);
}

float top_db_arg(std::optional<double> top_db) { return top_db.has_value() ? static_cast<float>(*top_db) : -1.0f; }

int smem_optin(int device) {
  static int cached[64] = {0};
  if (device < 0 || device >= 64) return 48 * 1024;
  if (cached[device] == 0) {
    int value = 0;
    check_cuda(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
               "cudaDeviceGetAttribute");
    cached[device] = value;
  }
  return cached[device];
}

// Which kernel ddfad::fd_mfcc runs: "clip" (one clip per block: a compiled preset shape whose clip fits the
// device's shared memory), "tiled" (power-of-two n_fft) or "cufft" (any n_fft).
std::string choose_kernel(int64_t n_fft, int64_t n_mels, int64_t n_mfcc, int64_t width, int64_t mel_width,
                          int64_t length, int64_t n_frames, int64_t hop, int device) {
  const int64_t smem = ddfad::fd_mfcc_clip_smem_bytes(n_fft, n_mels, n_mfcc, width, mel_width, length, n_frames);
  if (smem > 0 && smem <= smem_optin(device) && (n_frames - 1) * hop <= length) return "clip";
  if (ddfad::stft_mel_supported(n_fft, kTiledRadix)) return "tiled";
  return "cufft";
}

std::string fd_mfcc_kernel(int64_t n_fft, int64_t n_mels, int64_t n_mfcc, int64_t width, int64_t mel_width,
                           int64_t length, int64_t n_frames, int64_t hop_length) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  return choose_kernel(n_fft, n_mels, n_mfcc, width, mel_width, length, n_frames, hop_length, device);
}

void run_clip(const at::Tensor& waves, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
              const at::Tensor& mel_bands, const at::Tensor& mel_weights, const at::Tensor& dct,
              const at::Tensor& delta_start, const at::Tensor& delta_coef, const Tables& tab, int64_t n_frames,
              int64_t hop_length, double preemphasis, double amin, double ref_db, std::optional<double> top_db,
              bool with_deltas, int64_t max_blocks, at::Tensor& out) {
  check_cuda(ddfad::launch_fd_mfcc_clip(
                 waves.data_ptr<float>(), window.data_ptr<float>(), win_lo, win_hi, mel_bands.data_ptr<int64_t>(),
                 mel_weights.data_ptr<float>(), tab.mel_width, dct.data_ptr<float>(), delta_start.data_ptr<int64_t>(),
                 delta_coef.data_ptr<float>(), out.data_ptr<float>(), waves.size(0), waves.size(1), n_frames,
                 window.numel(), hop_length, tab.n_mels, tab.n_mfcc, tab.width, static_cast<float>(preemphasis),
                 static_cast<float>(amin), static_cast<float>(ref_db), top_db_arg(top_db), with_deltas, max_blocks,
                 c10::cuda::getCurrentCUDAStream()),
             "fd_mfcc (one clip per block)");
}

void run_tiled(const at::Tensor& waves, const at::Tensor& window, const at::Tensor& mel_bands,
               const at::Tensor& mel_weights, const at::Tensor& dct, const at::Tensor& delta_start,
               const at::Tensor& delta_coef, const Tables& tab, int64_t n_frames, int64_t hop_length,
               double preemphasis, double amin, double ref_db, std::optional<double> top_db, bool with_deltas,
               int64_t tile_frames, int64_t max_radix, at::Tensor& out) {
  const int64_t n_fft = window.numel();
  const int64_t tile = ddfad::stft_mel_tile_frames(n_fft, tile_frames);
  const auto opts = waves.options();
  at::Tensor db = at::empty({waves.size(0), n_frames, tab.n_mels}, opts);
  at::Tensor tile_max = at::empty({waves.size(0), (n_frames + tile - 1) / tile}, opts);
  check_cuda(ddfad::launch_fd_mfcc_fused(
                 waves.data_ptr<float>(), window.data_ptr<float>(), mel_bands.data_ptr<int64_t>(),
                 mel_weights.data_ptr<float>(), tab.mel_width, dct.data_ptr<float>(), delta_start.data_ptr<int64_t>(),
                 delta_coef.data_ptr<float>(), db.data_ptr<float>(), tile_max.data_ptr<float>(), out.data_ptr<float>(),
                 waves.size(0), waves.size(1), n_frames, n_fft, hop_length, tab.n_mels, tab.n_mfcc, tab.width,
                 static_cast<float>(preemphasis), static_cast<float>(amin), static_cast<float>(ref_db),
                 top_db_arg(top_db), with_deltas, tile, max_radix, c10::cuda::getCurrentCUDAStream()),
             "fd_mfcc (tiled)");
}

at::Tensor frame_waves_impl(const at::Tensor& waves, const at::Tensor& window, int64_t n_frames, int64_t hop_length,
                            double preemphasis) {
  const int64_t batch = waves.size(0), length = waves.size(1), n_fft = window.numel();
  at::Tensor frames = at::empty({batch * n_frames, n_fft}, waves.options());
  if (batch == 0) return frames;
  check_cuda(ddfad::launch_frame_waves(waves.data_ptr<float>(), window.data_ptr<float>(), frames.data_ptr<float>(),
                                       batch, length, n_frames, n_fft, hop_length, static_cast<float>(preemphasis),
                                       c10::cuda::getCurrentCUDAStream()),
             "frame_waves");
  return frames;
}

void mfcc_post_impl(const at::Tensor& spec, const at::Tensor& mel_bands, const at::Tensor& mel_weights,
                    const at::Tensor& dct, const at::Tensor& delta_start, const at::Tensor& delta_coef,
                    const Tables& tab, double amin, double ref_db, std::optional<double> top_db, bool with_deltas,
                    at::Tensor& out) {
  const int64_t batch = spec.size(0), n_frames = spec.size(1), n_freqs = spec.size(2);
  const auto opts = spec.options().dtype(at::kFloat);
  at::Tensor db = at::empty({batch, n_frames, tab.n_mels}, opts);
  at::Tensor tile_max = at::empty({batch, ddfad::mel_db_tiles(n_frames, n_freqs)}, opts);
  check_cuda(ddfad::launch_mfcc_post(reinterpret_cast<const float*>(spec.data_ptr()), mel_bands.data_ptr<int64_t>(),
                                     mel_weights.data_ptr<float>(), tab.mel_width, dct.data_ptr<float>(),
                                     delta_start.data_ptr<int64_t>(), delta_coef.data_ptr<float>(),
                                     db.data_ptr<float>(), tile_max.data_ptr<float>(), out.data_ptr<float>(), batch,
                                     n_frames, n_freqs, tab.n_mels, tab.n_mfcc, tab.width, static_cast<float>(amin),
                                     static_cast<float>(ref_db), top_db_arg(top_db), with_deltas,
                                     c10::cuda::getCurrentCUDAStream()),
             "mfcc_post");
}

// ddfad::fd_mfcc on CUDA: waves (B, L) float32 -> (B, 3, n_mfcc, T), or (B, n_mfcc, T) without deltas. win_lo /
// win_hi: the window's non-zero taps (tables.window_support). `group` (clips per task) concerns the CPU kernel only.
at::Tensor fd_mfcc_cuda(const at::Tensor& waves, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
                        const at::Tensor& mel_bands, const at::Tensor& mel_weights, const at::Tensor& dct,
                        const at::Tensor& delta_start, const at::Tensor& delta_coef, int64_t n_frames,
                        int64_t hop_length, double preemphasis, double amin, double ref_db,
                        std::optional<double> top_db, bool with_deltas, int64_t /*group*/) {
  check_waves(waves, window);
  const Tables tab = check_tables(mel_bands, mel_weights, dct, delta_start, delta_coef, n_frames, top_db,
                                  waves.device());
  const int64_t n_fft = window.numel();
  TORCH_CHECK(hop_length > 0 && 0 <= win_lo && win_lo <= win_hi && win_hi <= n_fft,
              "need hop_length > 0 and a window support inside its n_fft taps");
  const c10::cuda::CUDAGuard guard(waves.device());
  at::Tensor out = empty_features(waves, tab.n_mfcc, n_frames, with_deltas);
  if (waves.size(0) == 0) return out;
  const std::string kernel = choose_kernel(n_fft, tab.n_mels, tab.n_mfcc, tab.width, tab.mel_width, waves.size(1),
                                           n_frames, hop_length, waves.get_device());
  if (kernel == "clip") {
    run_clip(waves, window, win_lo, win_hi, mel_bands, mel_weights, dct, delta_start, delta_coef, tab, n_frames,
             hop_length, preemphasis, amin, ref_db, top_db, with_deltas, 0, out);
  } else if (kernel == "tiled") {
    run_tiled(waves, window, mel_bands, mel_weights, dct, delta_start, delta_coef, tab, n_frames, hop_length,
              preemphasis, amin, ref_db, top_db, with_deltas, 0, kTiledRadix, out);
  } else {
    const at::Tensor frames = frame_waves_impl(waves, window, n_frames, hop_length, preemphasis);
    const at::Tensor spec = at::fft_rfft(frames).view({waves.size(0), n_frames, n_fft / 2 + 1});
    mfcc_post_impl(spec, mel_bands, mel_weights, dct, delta_start, delta_coef, tab, amin, ref_db, top_db,
                   with_deltas, out);
  }
  return out;
}

// ddfad::fd_mfcc_clip: the per-clip kernel, required (an error for shapes without an instance); max_blocks
// caps the persistent grid (0: SMs x blocks per SM).
at::Tensor fd_mfcc_clip_cuda(const at::Tensor& waves, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
                             const at::Tensor& mel_bands, const at::Tensor& mel_weights, const at::Tensor& dct,
                             const at::Tensor& delta_start, const at::Tensor& delta_coef, int64_t n_frames,
                             int64_t hop_length, double preemphasis, double amin, double ref_db,
                             std::optional<double> top_db, bool with_deltas, int64_t max_blocks) {
  check_waves(waves, window);
  const Tables tab = check_tables(mel_bands, mel_weights, dct, delta_start, delta_coef, n_frames, top_db,
                                  waves.device());
  const c10::cuda::CUDAGuard guard(waves.device());
  TORCH_CHECK(choose_kernel(window.numel(), tab.n_mels, tab.n_mfcc, tab.width, tab.mel_width, waves.size(1),
                            n_frames, hop_length, waves.get_device()) == "clip",
              "fd_mfcc_clip: no per-clip kernel is compiled for n_fft=", window.numel(), ", n_mels=", tab.n_mels,
              ", n_mfcc=", tab.n_mfcc, ", width=", tab.width, " at ", waves.size(1), " samples");
  at::Tensor out = empty_features(waves, tab.n_mfcc, n_frames, with_deltas);
  if (waves.size(0) > 0) {
    run_clip(waves, window, win_lo, win_hi, mel_bands, mel_weights, dct, delta_start, delta_coef, tab, n_frames,
             hop_length, preemphasis, amin, ref_db, top_db, with_deltas, max_blocks, out);
  }
  return out;
}

// ddfad::fd_mfcc_fused: the tiled kernels for power-of-two n_fft; tile_frames per block of the first pass
// (0: the launcher's choice), FFT passes of at most max_radix points (2, 4, 8, 16; 0 = 8).
at::Tensor fd_mfcc_fused_cuda(const at::Tensor& waves, const at::Tensor& window, const at::Tensor& mel_bands,
                              const at::Tensor& mel_weights, const at::Tensor& dct, const at::Tensor& delta_start,
                              const at::Tensor& delta_coef, int64_t n_frames, int64_t hop_length, double preemphasis,
                              double amin, double ref_db, std::optional<double> top_db, bool with_deltas,
                              int64_t tile_frames, int64_t max_radix) {
  check_waves(waves, window);
  if (max_radix == 0) max_radix = kTiledRadix;
  const int64_t n_fft = window.numel();
  TORCH_CHECK(hop_length > 0 && tile_frames >= 0, "need hop_length > 0 and tile_frames >= 0");
  TORCH_CHECK(ddfad::stft_mel_supported(n_fft, max_radix), "fd_mfcc_fused needs a power-of-two n_fft in [4, 8192] ",
              "whose FFT fits passes of at most ", max_radix, " points, got ", n_fft);
  const Tables tab = check_tables(mel_bands, mel_weights, dct, delta_start, delta_coef, n_frames, top_db,
                                  waves.device());
  TORCH_CHECK(mel_bands.size(0) > 0 && dct.size(0) > 0, "need mel bands and coefficients");
  const c10::cuda::CUDAGuard guard(waves.device());
  at::Tensor out = empty_features(waves, tab.n_mfcc, n_frames, with_deltas);
  if (waves.size(0) > 0) {
    run_tiled(waves, window, mel_bands, mel_weights, dct, delta_start, delta_coef, tab, n_frames, hop_length,
              preemphasis, amin, ref_db, top_db, with_deltas, tile_frames, max_radix, out);
  }
  return out;
}

// ddfad::frame_waves: waves (B, L) float32 -> frames (B * T, n_fft): pre-emphasis (0 = off), centre zero
// padding, window (n_fft,).
at::Tensor frame_waves_cuda(const at::Tensor& waves, const at::Tensor& window, int64_t n_frames, int64_t hop_length,
                            double preemphasis) {
  check_waves(waves, window);
  TORCH_CHECK(hop_length > 0 && n_frames > 0, "need hop_length > 0 and n_frames > 0");
  const c10::cuda::CUDAGuard guard(waves.device());
  return frame_waves_impl(waves, window, n_frames, hop_length, preemphasis);
}

// ddfad::mfcc_post: spec (B, T, F) complex64 (rfft of the frames) -> (B, 3, n_mfcc, T) float32 (or without deltas).
at::Tensor mfcc_post_cuda(const at::Tensor& spec, const at::Tensor& mel_bands, const at::Tensor& mel_weights,
                          const at::Tensor& dct, const at::Tensor& delta_start, const at::Tensor& delta_coef,
                          double amin, double ref_db, std::optional<double> top_db, bool with_deltas) {
  TORCH_CHECK(spec.is_cuda(), "spec must be a CUDA tensor");
  check_input(spec, "spec", at::kComplexFloat, spec.device());
  TORCH_CHECK(spec.dim() == 3, "spec must be (B, T, F), got ", spec.sizes());
  const Tables tab = check_tables(mel_bands, mel_weights, dct, delta_start, delta_coef, spec.size(1), top_db,
                                  spec.device());
  const c10::cuda::CUDAGuard guard(spec.device());
  at::Tensor out = empty_features(spec, tab.n_mfcc, spec.size(1), with_deltas);
  if (spec.size(0) > 0) {
    mfcc_post_impl(spec, mel_bands, mel_weights, dct, delta_start, delta_coef, tab, amin, ref_db, top_db, with_deltas,
                   out);
  }
  return out;
}

at::Tensor fd_mfcc_clip_meta(const at::Tensor& waves, const at::Tensor&, int64_t, int64_t, const at::Tensor&,
                             const at::Tensor&, const at::Tensor& dct, const at::Tensor&, const at::Tensor&,
                             int64_t n_frames, int64_t, double, double, double, std::optional<double>,
                             bool with_deltas, int64_t) {
  return empty_features(waves, dct.size(0), n_frames, with_deltas);
}

at::Tensor fd_mfcc_fused_meta(const at::Tensor& waves, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor& dct, const at::Tensor&, const at::Tensor&, int64_t n_frames, int64_t,
                              double, double, double, std::optional<double>, bool with_deltas, int64_t, int64_t) {
  return empty_features(waves, dct.size(0), n_frames, with_deltas);
}

at::Tensor frame_waves_meta(const at::Tensor& waves, const at::Tensor& window, int64_t n_frames, int64_t, double) {
  return at::empty({waves.size(0) * n_frames, window.size(0)}, waves.options());
}

at::Tensor mfcc_post_meta(const at::Tensor& spec, const at::Tensor&, const at::Tensor&, const at::Tensor& dct,
                          const at::Tensor&, const at::Tensor&, double, double, std::optional<double>,
                          bool with_deltas) {
  return empty_features(spec, dct.size(0), spec.size(1), with_deltas);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ddfad, m) {
  m.def("fd_mfcc_clip(Tensor waves, Tensor window, int win_lo, int win_hi, Tensor mel_bands, Tensor mel_weights, "
        "Tensor dct, Tensor delta_start, Tensor delta_coef, int n_frames, int hop_length, float preemphasis, "
        "float amin, float ref_db, float? top_db, bool with_deltas, int max_blocks) -> Tensor");
  m.def("fd_mfcc_fused(Tensor waves, Tensor window, Tensor mel_bands, Tensor mel_weights, Tensor dct, "
        "Tensor delta_start, Tensor delta_coef, int n_frames, int hop_length, float preemphasis, float amin, "
        "float ref_db, float? top_db, bool with_deltas, int tile_frames, int max_radix) -> Tensor");
  m.def("frame_waves(Tensor waves, Tensor window, int n_frames, int hop_length, float preemphasis) -> Tensor");
  m.def("mfcc_post(Tensor spec, Tensor mel_bands, Tensor mel_weights, Tensor dct, Tensor delta_start, "
        "Tensor delta_coef, float amin, float ref_db, float? top_db, bool with_deltas) -> Tensor");
  m.def("fd_mfcc_kernel(int n_fft, int n_mels, int n_mfcc, int width, int mel_width, int length, int n_frames, "
        "int hop_length) -> str", &fd_mfcc_kernel);
}

TORCH_LIBRARY_IMPL(ddfad, CUDA, m) {
  m.impl("fd_mfcc", &fd_mfcc_cuda);
  m.impl("fd_mfcc_clip", &fd_mfcc_clip_cuda);
  m.impl("fd_mfcc_fused", &fd_mfcc_fused_cuda);
  m.impl("frame_waves", &frame_waves_cuda);
  m.impl("mfcc_post", &mfcc_post_cuda);
}

TORCH_LIBRARY_IMPL(ddfad, Meta, m) {
  m.impl("fd_mfcc_clip", &fd_mfcc_clip_meta);
  m.impl("fd_mfcc_fused", &fd_mfcc_fused_meta);
  m.impl("frame_waves", &frame_waves_meta);
  m.impl("mfcc_post", &mfcc_post_meta);
}
