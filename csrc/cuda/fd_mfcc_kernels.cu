// FD-MFCC CUDA kernels. The bodies live in fd_mfcc_math.h so that the CPU harness runs the same code.
//
// The shipped presets run fd_mfcc_clip.cu (a whole clip per block). Here, for every other shape:
// Power-of-two n_fft (fused): stft_mel_kernel reads the waves (each sample about n_fft/hop times, from
// L1/L2) and writes dB (4 n_mels per frame); dct_delta_kernel reads dB back (mostly L2) and writes the
// (3, n_mfcc) output once. At B=1024, 1 s at 16 kHz: ~65 MB + 2 x 21 MB + 31 MB of DRAM traffic, against
// ~1.2 GB for the cuFFT pipeline (frames and spectrum each written and read once).
// Other n_fft: frame_kernel -> cuFFT (outside) -> mel_db_kernel -> dct_delta_kernel. The mel product is
// sparse (each band's non-zero bins only, about 2 F multiply-adds per frame).
#include "fd_mfcc_kernels.h"

#include "fd_mfcc_math.h"

namespace ddfad {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSmemFloats = 48 * 1024 / 4;
constexpr int kDeltaTile = 32;

// Index is int32 when the frames fit (its divisions are several times cheaper than int64's), else int64.
template <typename Index>
__global__ void __launch_bounds__(kThreads) frame_kernel(const float* __restrict__ waves,
                                                         const float* __restrict__ window, float* __restrict__ frames,
                                                         int64_t length, Index n_frames, Index n_fft, int hop,
                                                         float coef, float zi_scale, Index total) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index row = i / n_fft;                        // b * T + t
    const int k = static_cast<int>(i - row * n_fft);
    const Index b = row / n_frames;
    frames[i] = frame_value(waves + static_cast<int64_t>(b) * length, length, row - b * n_frames, k,
                            static_cast<int>(n_fft), hop, coef, zi_scale, window);
  }
}

__global__ void __launch_bounds__(kThreads) mel_db_kernel(MelDbParams p) {
  extern __shared__ __align__(16) float smem_mel[];
  mel_db_block(p, static_cast<int64_t>(blockIdx.x), static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x),
               smem_mel, CtaSync());
}

template <int kMaxLog2>
__global__ void __launch_bounds__(kThreads) stft_mel_kernel(const StftMelParams p) {
  extern __shared__ __align__(16) float smem_stft[];
  stft_mel_block<kMaxLog2>(p, static_cast<int64_t>(blockIdx.x), static_cast<int>(threadIdx.x),
                           static_cast<int>(blockDim.x), smem_stft, CtaSync());
}

__global__ void __launch_bounds__(kThreads) dct_delta_kernel(DctDeltaParams p) {
  extern __shared__ __align__(16) float smem_dct[];
  dct_delta_block(p, static_cast<int64_t>(blockIdx.x), static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x),
                  smem_dct, CtaSync());
}

int64_t delta_tile_frames(int64_t width, int64_t n_mels, int64_t n_mfcc) {
  int64_t tile = kDeltaTile;
  while (tile > 1 && dct_delta_smem_floats(static_cast<int>(tile), static_cast<int>(width), static_cast<int>(n_mels),
                                           static_cast<int>(n_mfcc), kThreads) > kSmemFloats) {
    tile /= 2;
  }
  return tile;
}

// The DCT / delta pass over dB (B, T, n_mels) and its tile maxima (B, n_mel_tiles).
cudaError_t launch_dct_delta(const float* db, const float* tile_max, const float* dct, const int64_t* delta_start,
                             const float* delta_coef, float* out, int64_t batch, int64_t n_frames, int64_t n_mels,
                             int64_t n_mfcc, int64_t width, int64_t n_mel_tiles, float top_db, bool with_deltas,
                             cudaStream_t stream) {
  const DctDeltaParams dp = make_dct_delta_params(db, tile_max, dct, delta_start, delta_coef, out, n_frames, n_mels,
                                                  n_mfcc, width, n_mel_tiles,
                                                  delta_tile_frames(width, n_mels, n_mfcc), top_db, with_deltas);
  const int64_t smem_floats = dct_delta_smem_floats(dp.tile_frames, dp.width, dp.n_mels, dp.n_mfcc, kThreads);
  if (smem_floats > kSmemFloats) return cudaErrorInvalidValue;
  dct_delta_kernel<<<static_cast<unsigned>(batch * dp.n_tiles), kThreads, sizeof(float) * smem_floats, stream>>>(dp);
  return cudaGetLastError();
}

}  // namespace

int64_t stft_mel_tile_frames(int64_t n_fft, int64_t tile_frames) {
  if (tile_frames > 0) return tile_frames;
  for (int64_t tile = 16; tile > 1; tile /= 2) {
    if (stft_mel_smem_floats(static_cast<int>(n_fft), static_cast<int>(tile), kThreads) <= kSmemFloats) return tile;
  }
  return 1;
}

bool stft_mel_supported(int64_t n_fft, int64_t max_radix) {
  uint64_t plan = 0;
  return n_fft >= 4 && (n_fft & (n_fft - 1)) == 0 && n_fft <= 8192 &&
         fft_schedule(log2_ceil(n_fft / 2), static_cast<int>(max_radix), kThreads, &plan) > 0;
}

cudaError_t launch_fd_mfcc_fused(const float* waves, const float* window, const int64_t* mel_bands,
                                 const float* mel_weights, int64_t mel_width, const float* dct,
                                 const int64_t* delta_start, const float* delta_coef, float* db, float* tile_max,
                                 float* out, int64_t batch, int64_t length, int64_t n_frames, int64_t n_fft,
                                 int64_t hop, int64_t n_mels, int64_t n_mfcc, int64_t width, float coef, float amin,
                                 float ref_db, float top_db, bool with_deltas, int64_t tile_frames,
                                 int64_t max_radix, cudaStream_t stream) {
  if (!stft_mel_supported(n_fft, max_radix) || n_frames < 1) return cudaErrorInvalidValue;
  const StftMelParams p = make_stft_mel_params(waves, window, mel_bands, mel_weights, mel_width, db, tile_max, length,
                                               n_frames, n_fft, hop, n_mels, coef, amin, ref_db,
                                               stft_mel_tile_frames(n_fft, tile_frames), max_radix, kThreads);
  if (p.n_pass < 0) return cudaErrorInvalidValue;
  const int max_log2 = fft_plan_max_log2(p.fft_plan, p.n_pass);
  void (*kernel)(const StftMelParams) = max_log2 >= 4   ? stft_mel_kernel<4>
                                        : max_log2 == 3 ? stft_mel_kernel<3>
                                        : max_log2 == 2 ? stft_mel_kernel<2>
                                                        : stft_mel_kernel<1>;
  const int64_t smem = sizeof(float) * stft_mel_smem_floats(p.n_fft, p.tile_frames, kThreads);
  if (smem > kSmemFloats * 4) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  kernel<<<static_cast<unsigned>(batch * p.n_tiles), kThreads, static_cast<size_t>(smem), stream>>>(p);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return launch_dct_delta(db, tile_max, dct, delta_start, delta_coef, out, batch, n_frames, n_mels, n_mfcc, width,
                          p.n_tiles, top_db, with_deltas, stream);
}

int64_t mel_db_tile_frames(int64_t n_freqs) {
  int64_t tile = (kSmemFloats - kThreads) / n_freqs;
  return tile < 1 ? 1 : (tile > 16 ? 16 : tile);
}

int64_t mel_db_tiles(int64_t n_frames, int64_t n_freqs) {
  const int64_t tile = mel_db_tile_frames(n_freqs);
  return (n_frames + tile - 1) / tile;
}

cudaError_t launch_frame_waves(const float* waves, const float* window, float* frames, int64_t batch, int64_t length,
                               int64_t n_frames, int64_t n_fft, int64_t hop, float coef, cudaStream_t stream) {
  const int64_t total = batch * n_frames * n_fft;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  blocks = blocks < 1 ? 1 : (blocks > (1 << 20) ? (1 << 20) : blocks);
  const float zi_scale = coef != 0.0f ? 1.0f : 0.0f;
  if (total < (int64_t{1} << 31)) {
    frame_kernel<int><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        waves, window, frames, length, static_cast<int>(n_frames), static_cast<int>(n_fft), static_cast<int>(hop),
        coef, zi_scale, static_cast<int>(total));
  } else {
    frame_kernel<int64_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        waves, window, frames, length, n_frames, n_fft, static_cast<int>(hop), coef, zi_scale, total);
  }
  return cudaGetLastError();
}

cudaError_t launch_mfcc_post(const float* spec, const int64_t* mel_bands, const float* mel_weights,
                             int64_t mel_width, const float* dct, const int64_t* delta_start,
                             const float* delta_coef, float* db, float* tile_max, float* out, int64_t batch,
                             int64_t n_frames, int64_t n_freqs, int64_t n_mels, int64_t n_mfcc, int64_t width,
                             float amin, float ref_db, float top_db, bool with_deltas, cudaStream_t stream) {
  if (n_freqs + kThreads > kSmemFloats) return cudaErrorInvalidValue;   // one frame's power must fit
  const MelDbParams mp = make_mel_db_params(spec, mel_bands, mel_weights, mel_width, db, tile_max, n_frames, n_freqs,
                                            n_mels, mel_db_tile_frames(n_freqs), amin, ref_db);
  const size_t mel_smem = sizeof(float) * mel_db_smem_floats(mp.tile_frames, mp.F, kThreads);
  mel_db_kernel<<<static_cast<unsigned>(batch * mp.n_tiles), kThreads, mel_smem, stream>>>(mp);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return launch_dct_delta(db, tile_max, dct, delta_start, delta_coef, out, batch, n_frames, n_mels, n_mfcc, width,
                          mp.n_tiles, top_db, with_deltas, stream);
}

}  // namespace ddfad
