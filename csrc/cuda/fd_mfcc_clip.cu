// The per-clip FD-MFCC kernel (body: fd_mfcc_clip.h), instantiated for the shapes of the shipped presets.
// One block per clip at a time, a persistent grid of (SMs x blocks per SM) walking the batch. Other shapes
// run the tiled kernels of fd_mfcc_kernels.cu (the launcher of ddfad::fd_mfcc chooses).
#include "fd_mfcc_clip.h"
#include "fd_mfcc_kernels.h"

#include <atomic>

namespace ddfad {
namespace {

constexpr int kClipThreads = 256;

template <int LOG2N, int LOG2R, int N_MELS, int N_MFCC, int WIDTH, int MIN_BLOCKS>
__global__ void __launch_bounds__(kClipThreads, MIN_BLOCKS) fd_mfcc_clip_kernel(const FdMfccClipParams p) {
  extern __shared__ __align__(16) float smem_clip[];
  CtaCtx ctx;
  ctx.tid = static_cast<int>(threadIdx.x);
  ctx.nth = static_cast<int>(blockDim.x);
  fd_mfcc_clip_run<LOG2N, LOG2R, N_MELS, N_MFCC, WIDTH>(p, static_cast<int64_t>(blockIdx.x),
                                                        static_cast<int64_t>(gridDim.x), smem_clip, ctx);
}

template <int LOG2N, int LOG2R, int N_MELS, int N_MFCC>
int clip_smem_floats(int mel_width, int length, int n_frames) {
  return ClipLayout<LOG2N, LOG2R, N_MELS, N_MFCC>(mel_width, length, n_frames, kClipThreads).total;
}

struct ClipInstance {
  int n_fft, n_mels, n_mfcc, width;   // the shape it is compiled for
  int min_blocks;                     // blocks per SM it is compiled for (__launch_bounds__)
  void (*kernel)(const FdMfccClipParams);
  int (*smem_floats)(int, int, int);
  std::atomic<int>* smem_set;         // per device: the largest dynamic shared memory already allowed
};

constexpr int kMaxDevices = 64;
std::atomic<int> g_smem_set[2][kMaxDevices];

// fsdd: 8 kHz, n_fft 256 (128-point complex FFT: 4 points x 32 lanes), 40 mels, 20 MFCCs, width 9; ~62 KB,
// 3 blocks per SM. speech16k: n_fft 512 (8 points x 32 lanes); ~107 KB, 2 blocks per SM.
const ClipInstance kInstances[] = {
    {256, 40, 20, 9, 3, fd_mfcc_clip_kernel<8, 2, 40, 20, 9, 3>, clip_smem_floats<8, 2, 40, 20>, g_smem_set[0]},
    {512, 40, 20, 9, 2, fd_mfcc_clip_kernel<9, 3, 40, 20, 9, 2>, clip_smem_floats<9, 3, 40, 20>, g_smem_set[1]},
};

const ClipInstance* find_instance(int64_t n_fft, int64_t n_mels, int64_t n_mfcc, int64_t width) {
  for (const auto& inst : kInstances) {
    if (inst.n_fft == n_fft && inst.n_mels == n_mels && inst.n_mfcc == n_mfcc && inst.width == width) return &inst;
  }
  return nullptr;
}

}  // namespace

int64_t fd_mfcc_clip_smem_bytes(int64_t n_fft, int64_t n_mels, int64_t n_mfcc, int64_t width, int64_t mel_width,
                                int64_t length, int64_t n_frames) {
  const ClipInstance* inst = find_instance(n_fft, n_mels, n_mfcc, width);
  if (inst == nullptr || length < 1 || length >= (int64_t{1} << 24) || n_frames < 1 ||
      n_frames >= (int64_t{1} << 20)) {
    return 0;
  }
  return static_cast<int64_t>(sizeof(float)) *
         inst->smem_floats(static_cast<int>(mel_width), static_cast<int>(length), static_cast<int>(n_frames));
}

cudaError_t launch_fd_mfcc_clip(const float* waves, const float* window, int64_t win_lo, int64_t win_hi,
                                const int64_t* mel_bands, const float* mel_weights, int64_t mel_width,
                                const float* dct, const int64_t* delta_start, const float* delta_coef, float* out,
                                int64_t batch, int64_t length, int64_t n_frames, int64_t n_fft, int64_t hop,
                                int64_t n_mels, int64_t n_mfcc, int64_t width, float preemphasis, float amin,
                                float ref_db, float top_db, bool with_deltas, int64_t max_blocks,
                                cudaStream_t stream) {
  const ClipInstance* inst = find_instance(n_fft, n_mels, n_mfcc, width);
  const int64_t smem = fd_mfcc_clip_smem_bytes(n_fft, n_mels, n_mfcc, width, mel_width, length, n_frames);
  if (inst == nullptr || smem == 0 || (n_frames - 1) * hop > length) return cudaErrorInvalidValue;
  int device = 0, n_sm = 1;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  if (device >= kMaxDevices) return cudaErrorInvalidDevice;
  std::atomic<int>& allowed = inst->smem_set[device];
  if (smem > allowed.load()) {
    err = cudaFuncSetAttribute(inst->kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
    allowed.store(static_cast<int>(smem));
  }
  int64_t blocks = static_cast<int64_t>(n_sm) * inst->min_blocks;
  if (max_blocks > 0 && max_blocks < blocks) blocks = max_blocks;
  if (batch < blocks) blocks = batch;
  const FdMfccClipParams p = make_fd_mfcc_clip_params(
      waves, window, win_lo, win_hi, mel_bands, mel_weights, mel_width, dct, delta_start, delta_coef, out, batch,
      length, n_frames, hop, preemphasis, amin, ref_db, top_db, with_deltas);
  inst->kernel<<<static_cast<unsigned>(blocks), kClipThreads, static_cast<size_t>(smem), stream>>>(p);
  return cudaGetLastError();
}

}  // namespace ddfad
