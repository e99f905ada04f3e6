// Fast Griffin-Lim loop kernels: fused momentum/normalise/magnitude step and the overlap-add gather
// (deterministic, no atomics) fused with re-framing for the next rfft.
#include "griffin_lim_kernels.h"

namespace ddfad {
namespace {

template <typename scalar_t>
struct Vec2;
template <>
struct Vec2<float> { using type = float2; };
template <>
struct Vec2<double> { using type = double2; };

template <typename scalar_t>
__global__ void gla_step_kernel(typename Vec2<scalar_t>::type* __restrict__ x,
                                const typename Vec2<scalar_t>::type* __restrict__ cur,
                                const typename Vec2<scalar_t>::type* __restrict__ prev,
                                const scalar_t* __restrict__ mag, int64_t n, scalar_t coef, scalar_t eps) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const auto c = cur[i];
    const auto p = prev[i];
    const scalar_t ar = c.x - coef * p.x;
    const scalar_t ai = c.y - coef * p.y;
    const scalar_t scale = mag[i] / (sqrt(ar * ar + ai * ai) + eps);
    typename Vec2<scalar_t>::type v;
    v.x = ar * scale;
    v.y = ai * scale;
    x[i] = v;
  }
}

template <typename scalar_t>
__global__ void overlap_add_kernel(const scalar_t* __restrict__ frames, const scalar_t* __restrict__ window,
                                   const scalar_t* __restrict__ inv_env, scalar_t* __restrict__ out,
                                   int64_t n_frames, int64_t n_fft, int64_t hop, int64_t length,
                                   int64_t n_out, bool reframe) {
  const int64_t b = blockIdx.y;
  const int64_t half = n_fft / 2;
  const int64_t sig_len = n_fft + hop * (n_frames - 1);
  const scalar_t* base = frames + b * n_frames * n_fft;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n_out;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = reframe ? (j / n_fft) * hop + (j % n_fft) - half : j;
    const int64_t p = n + half;
    scalar_t y = 0;
    if (n >= 0 && n < length && p < sig_len) {
      int64_t t = p / hop;
      if (t > n_frames - 1) t = n_frames - 1;
      scalar_t acc = 0;
      for (; t >= 0; --t) {
        const int64_t k = p - t * hop;
        if (k >= n_fft) break;
        acc += __ldg(window + k) * __ldg(base + t * n_fft + k);
      }
      y = acc * __ldg(inv_env + p);
    }
    if (reframe) y *= __ldg(window + j % n_fft);
    out[b * n_out + j] = y;
  }
}

int grid_for(int64_t work, int threads) {
  int64_t blocks = (work + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace

template <typename scalar_t>
cudaError_t launch_gla_step(scalar_t* x, const scalar_t* cur, const scalar_t* prev, const scalar_t* mag,
                            int64_t n, scalar_t coef, scalar_t eps, cudaStream_t stream) {
  using V = typename Vec2<scalar_t>::type;
  constexpr int threads = 256;
  const int64_t want = (n + threads - 1) / threads;
  const int blocks = static_cast<int>(want < (1 << 20) ? (want > 0 ? want : 1) : (1 << 20));
  gla_step_kernel<scalar_t><<<blocks, threads, 0, stream>>>(reinterpret_cast<V*>(x), reinterpret_cast<const V*>(cur),
                                                            reinterpret_cast<const V*>(prev), mag, n, coef, eps);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_overlap_add(const scalar_t* frames, const scalar_t* window, const scalar_t* inv_env,
                               scalar_t* out, int64_t batch, int64_t n_frames, int64_t n_fft, int64_t hop,
                               int64_t length, bool reframe, cudaStream_t stream) {
  constexpr int threads = 256;
  const int64_t n_out = reframe ? n_frames * n_fft : length;
  dim3 grid(grid_for(n_out, threads), static_cast<unsigned>(batch));
  overlap_add_kernel<scalar_t><<<grid, threads, 0, stream>>>(frames, window, inv_env, out, n_frames, n_fft, hop,
                                                             length, n_out, reframe);
  return cudaGetLastError();
}

template cudaError_t launch_gla_step<float>(float*, const float*, const float*, const float*, int64_t, float, float,
                                            cudaStream_t);
template cudaError_t launch_gla_step<double>(double*, const double*, const double*, const double*, int64_t, double,
                                             double, cudaStream_t);
template cudaError_t launch_overlap_add<float>(const float*, const float*, const float*, float*, int64_t, int64_t,
                                               int64_t, int64_t, int64_t, bool, cudaStream_t);
template cudaError_t launch_overlap_add<double>(const double*, const double*, const double*, double*, int64_t,
                                                int64_t, int64_t, int64_t, int64_t, bool, cudaStream_t);

}  // namespace ddfad
