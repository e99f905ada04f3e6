// Fast Griffin-Lim loop kernels: the momentum step and the overlap-add gather (deterministic, no
// atomics) used with cuFFT, and one fused iteration per launch (inverse FFT, overlap-add, forward FFT
// and step of a tile of frames in shared memory) for power-of-two n_fft. The bodies live in
// griffin_lim_math.h so that the CPU harness runs the same code.
//
// Bytes per iteration and spectrogram bin (float32): the fused kernel reads x (8, plus the halo frames
// of its neighbours, mostly from L2), prev (8) and mag (4) and writes x (8) and prev (8): about 36, the
// floor of docs/architecture.md section 5. The cuFFT path moves about 92.
#include "griffin_lim_kernels.h"

#include "griffin_lim_math.h"

namespace ddfad {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kDefaultSmem = 48 * 1024;

// Index is int32 when n < 2^31 (the common case: its modulo is several times cheaper), else int64.
template <typename S, typename Index>
__global__ void __launch_bounds__(kThreads) gla_step_kernel(Cplx<S>* __restrict__ x, const Cplx<S>* __restrict__ cur,
                                                            const Cplx<S>* __restrict__ prev,
                                                            const S* __restrict__ mag, Index n, Index n_freqs,
                                                            S coef, S eps) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    x[i] = gla_update(cur[i], prev[i], mag[i], coef, eps, i % n_freqs == 0);
  }
}

template <typename S>
__global__ void __launch_bounds__(kThreads) overlap_add_kernel(const S* __restrict__ frames,
                                                               const S* __restrict__ window,
                                                               const S* __restrict__ inv_env, S* __restrict__ out,
                                                               int64_t n_frames, int n_fft, int hop, FastDiv div_hop,
                                                               FastDiv div_n_fft, int64_t length, int n_out,
                                                               bool reframe) {
  const int64_t b = blockIdx.y;
  const S* clip = frames + b * n_frames * n_fft;
  const int stride = static_cast<int>(gridDim.x * blockDim.x);
  for (int j = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); j < n_out; j += stride) {
    out[b * n_out + j] = ola_output(clip, window, inv_env, j, static_cast<int>(n_frames), n_fft, hop, div_hop,
                                    div_n_fft, length, reframe);
  }
}

template <typename S, int kMaxLog2>
__global__ void __launch_bounds__(kThreads) gla_fused_kernel(const GlaFusedParams<S> p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  gla_fused_block<S, kMaxLog2>(p, static_cast<int64_t>(blockIdx.x), static_cast<int>(threadIdx.x),
                  static_cast<int>(blockDim.x), reinterpret_cast<S*>(smem_raw), CtaSync());
}

unsigned blocks_for(int64_t work, int64_t cap) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

}  // namespace

bool gla_fused_fft_supported(int64_t n_fft, int64_t max_radix) {
  uint64_t plan = 0;
  return n_fft >= 4 && (n_fft & (n_fft - 1)) == 0 && n_fft <= 8192 &&
         fft_schedule(log2_ceil(n_fft / 2), static_cast<int>(max_radix), kThreads, &plan) > 0;
}

int64_t gla_fused_smem_bytes(int64_t n_fft, int64_t hop, int64_t tile_frames, int64_t scalar_bytes) {
  return scalar_bytes * gla_fused_smem_scalars(static_cast<int>(n_fft), static_cast<int>(hop),
                                               static_cast<int>(tile_frames));
}

int64_t gla_fused_default_tile(int64_t n_fft, int64_t hop, int64_t scalar_bytes) {
  for (int64_t tile = 16; tile > 1; tile /= 2) {
    if (gla_fused_smem_bytes(n_fft, hop, tile, scalar_bytes) <= kDefaultSmem) return tile;
  }
  return 1;
}

template <typename S>
cudaError_t launch_gla_step(S* x, const S* cur, const S* prev, const S* mag, int64_t n, int64_t n_freqs, S coef,
                            S eps, cudaStream_t stream) {
  auto* xc = reinterpret_cast<Cplx<S>*>(x);
  auto* cc = reinterpret_cast<const Cplx<S>*>(cur);
  auto* pc = reinterpret_cast<const Cplx<S>*>(prev);
  if (n < (int64_t{1} << 31)) {
    gla_step_kernel<S, int><<<blocks_for(n, 1 << 20), kThreads, 0, stream>>>(
        xc, cc, pc, mag, static_cast<int>(n), static_cast<int>(n_freqs), coef, eps);
  } else {
    gla_step_kernel<S, int64_t><<<blocks_for(n, 1 << 20), kThreads, 0, stream>>>(xc, cc, pc, mag, n, n_freqs, coef,
                                                                                 eps);
  }
  return cudaGetLastError();
}

template <typename S>
cudaError_t launch_overlap_add(const S* frames, const S* window, const S* inv_env, S* out, int64_t batch,
                               int64_t n_frames, int64_t n_fft, int64_t hop, int64_t length, bool reframe,
                               cudaStream_t stream) {
  const int64_t n_out = reframe ? n_frames * n_fft : length;
  if (n_out >= (int64_t{1} << 31) || n_fft + hop * (n_frames - 1) >= (int64_t{1} << 31)) {
    return cudaErrorInvalidValue;                        // clip-local positions are 32-bit
  }
  for (int64_t b0 = 0; b0 < batch; b0 += 65535) {       // grid.y holds at most 65535 clips
    const int64_t nb = batch - b0 < 65535 ? batch - b0 : 65535;
    dim3 grid(blocks_for(n_out, 1 << 16), static_cast<unsigned>(nb));
    overlap_add_kernel<S><<<grid, kThreads, 0, stream>>>(frames + b0 * n_frames * n_fft, window, inv_env,
                                                        out + b0 * n_out, n_frames, static_cast<int>(n_fft),
                                                        static_cast<int>(hop), make_fast_div(hop),
                                                        make_fast_div(n_fft), length, static_cast<int>(n_out),
                                                        reframe);
  }
  return cudaGetLastError();
}

template <typename S>
cudaError_t launch_gla_fused_step(const S* x_in, S* x_out, S* prev, const S* mag, const S* window, const S* inv_env,
                                  int64_t batch, int64_t n_frames, int64_t n_fft, int64_t hop, int64_t length,
                                  S coef, S eps, int64_t tile_frames, int64_t max_radix, cudaStream_t stream) {
  if (tile_frames <= 0) tile_frames = gla_fused_default_tile(n_fft, hop, sizeof(S));
  if (!gla_fused_fft_supported(n_fft, max_radix)) return cudaErrorInvalidValue;
  if (n_fft + hop * (n_frames - 1) >= (int64_t{1} << 31)) return cudaErrorInvalidValue;   // 32-bit positions
  const GlaFusedParams<S> p = make_gla_fused_params<S>(x_in, x_out, prev, mag, window, inv_env, n_frames, n_fft, hop,
                                                       length, coef, eps, tile_frames, max_radix, kThreads);
  if (p.n_pass < 0) return cudaErrorInvalidValue;
  const int max_log2 = fft_plan_max_log2(p.fft_plan, p.n_pass);
  void (*kernel)(const GlaFusedParams<S>) = max_log2 >= 4   ? gla_fused_kernel<S, 4>
                                            : max_log2 == 3 ? gla_fused_kernel<S, 3>
                                            : max_log2 == 2 ? gla_fused_kernel<S, 2>
                                                            : gla_fused_kernel<S, 1>;
  const int64_t smem = gla_fused_smem_bytes(n_fft, hop, tile_frames, sizeof(S));
  if (smem > kDefaultSmem) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  const int64_t blocks = batch * p.n_tiles;          // one block per (clip, tile); grid.x holds 2^31 - 1
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(blocks));
  kernel<<<grid, kThreads, static_cast<size_t>(smem), stream>>>(p);
  return cudaGetLastError();
}

template cudaError_t launch_gla_step<float>(float*, const float*, const float*, const float*, int64_t, int64_t, float,
                                            float, cudaStream_t);
template cudaError_t launch_gla_step<double>(double*, const double*, const double*, const double*, int64_t, int64_t,
                                             double, double, cudaStream_t);
template cudaError_t launch_overlap_add<float>(const float*, const float*, const float*, float*, int64_t, int64_t,
                                               int64_t, int64_t, int64_t, bool, cudaStream_t);
template cudaError_t launch_overlap_add<double>(const double*, const double*, const double*, double*, int64_t,
                                                int64_t, int64_t, int64_t, int64_t, bool, cudaStream_t);
template cudaError_t launch_gla_fused_step<float>(const float*, float*, float*, const float*, const float*,
                                                  const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float,
                                                  float, int64_t, int64_t, cudaStream_t);
template cudaError_t launch_gla_fused_step<double>(const double*, double*, double*, const double*, const double*,
                                                   const double*, int64_t, int64_t, int64_t, int64_t, int64_t, double,
                                                   double, int64_t, int64_t, cudaStream_t);

}  // namespace ddfad
