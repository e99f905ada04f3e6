// CPU harness of the CUDA kernel bodies (tests/test_cuda_logic.py builds it with g++ into a shared library
// and calls it through ctypes). Each "block" runs the same body function as the __global__ kernel, with
// `nth` host threads, a barrier in place of __syncthreads, and shared memory poisoned with NaN, so index
// arithmetic, barrier placement and unwritten shared memory show up as wrong or NaN results. The warp-level
// bodies (fd_mfcc_clip.h) get a context whose __syncwarp is a barrier of the warp's 32 threads and whose
// shuffles go through an exchange buffer between two such barriers. Parameters come from the launchers' own
// make_*_params functions. Not part of the extension: setup.py compiles csrc/cuda/*.cu and *.cpp only.
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include <memory>

#include "../fd_mfcc_clip.h"
#include "../fd_mfcc_math.h"
#include "../griffin_lim_math.h"

namespace {

struct NoSync {
  void operator()() const {}
};

// A reusable barrier for `count` threads (C++17: no std::barrier needed).
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation != generation_; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_;
  int arrived_ = 0;
  long generation_ = 0;
};

// Run `body(block, tid, nth, smem, sync)` for every block; threads of a block share `smem`.
template <typename S, class Body>
void run_blocks(int64_t n_blocks, int nth, int64_t smem_scalars, Body body) {
  std::vector<S> smem(static_cast<size_t>(smem_scalars > 0 ? smem_scalars : 1));
  for (int64_t block = 0; block < n_blocks; ++block) {
    for (auto& v : smem) v = std::numeric_limits<S>::quiet_NaN();
    if (nth == 1) {
      body(block, 0, 1, smem.data(), NoSync());
      continue;
    }
    Barrier bar(nth);
    auto sync = [&bar]() { bar.arrive_and_wait(); };
    std::vector<std::thread> threads;
    threads.reserve(nth);
    for (int tid = 0; tid < nth; ++tid) {
      threads.emplace_back([&, tid]() { body(block, tid, nth, smem.data(), sync); });
    }
    for (auto& t : threads) t.join();
  }
}

// What the 32 threads of one emulated warp share: their barrier and the exchange buffer of the shuffles.
struct WarpShared {
  WarpShared() : bar(32) {}
  Barrier bar;
  ddfad::Cplx<float> slot[32];
};

// The context of the warp-level bodies on host threads (the device's is ddfad::CtaCtx).
struct HostCtx {
  int tid, nth;
  Barrier* block;
  WarpShared* warp;
  void sync() const { block->arrive_and_wait(); }
  void warp_sync() const { warp->bar.arrive_and_wait(); }
  ddfad::Cplx<float> exchange(ddfad::Cplx<float> v, int src) const {
    warp->slot[tid & 31] = v;
    warp_sync();
    const ddfad::Cplx<float> got = warp->slot[src & 31];
    warp_sync();
    return got;
  }
  ddfad::Cplx<float> shfl_xor(ddfad::Cplx<float> v, int mask) const { return exchange(v, (tid & 31) ^ mask); }
  ddfad::Cplx<float> shfl(ddfad::Cplx<float> v, int src) const { return exchange(v, src); }
  float shfl_xor(float v, int mask) const { return exchange(ddfad::make_cplx<float>(v, 0.0f), (tid & 31) ^ mask).re; }
  float shfl(float v, int src) const { return exchange(ddfad::make_cplx<float>(v, 0.0f), src).re; }
};

// Run `body(block, smem, ctx)` for every block with nth (a multiple of 32) threads sharing `smem`.
template <class Body>
void run_blocks_ctx(int64_t n_blocks, int nth, int64_t smem_floats, Body body) {
  std::vector<float> smem(static_cast<size_t>(smem_floats > 0 ? smem_floats : 1));
  for (int64_t block = 0; block < n_blocks; ++block) {
    for (auto& v : smem) v = std::numeric_limits<float>::quiet_NaN();
    Barrier bar(nth);
    std::vector<std::unique_ptr<WarpShared>> warps;
    for (int w = 0; w < nth / 32; ++w) warps.emplace_back(new WarpShared());
    std::vector<std::thread> threads;
    threads.reserve(nth);
    for (int tid = 0; tid < nth; ++tid) {
      threads.emplace_back([&, tid]() {
        const HostCtx ctx{tid, nth, &bar, warps[tid / 32].get()};
        body(block, smem.data(), ctx);
      });
    }
    for (auto& t : threads) t.join();
  }
}

// The per-clip kernel's shapes compiled here: the launcher's two (fd_mfcc_clip.cu) and three more that
// exercise several frames per warp (G > 1) and other points per lane.
template <int LOG2N, int LOG2R, int N_MELS, int N_MFCC, int WIDTH>
int64_t run_clip(const ddfad::FdMfccClipParams& p, int64_t n_blocks, int nth, bool run) {
  const ddfad::ClipLayout<LOG2N, LOG2R, N_MELS, N_MFCC> lay(p.mel_width, p.length, p.T, nth);
  if (run) {
    run_blocks_ctx(n_blocks, nth, lay.total, [&](int64_t block, float* smem, const HostCtx& ctx) {
      ddfad::fd_mfcc_clip_run<LOG2N, LOG2R, N_MELS, N_MFCC, WIDTH>(p, block, n_blocks, smem, ctx);
    });
  }
  return lay.total;
}

int64_t clip_shape(int shape, const ddfad::FdMfccClipParams& p, int64_t n_blocks, int nth, bool run) {
  switch (shape) {
    case 0: return run_clip<8, 2, 40, 20, 9>(p, n_blocks, nth, run);     // fsdd (fd_mfcc_clip.cu)
    case 1: return run_clip<9, 3, 40, 20, 9>(p, n_blocks, nth, run);     // speech16k (fd_mfcc_clip.cu)
    case 2: return run_clip<6, 2, 16, 8, 5>(p, n_blocks, nth, run);      // 8 lanes a frame, 4 frames a warp
    case 3: return run_clip<7, 3, 24, 13, 9>(p, n_blocks, nth, run);     // 8 points a lane, 8 lanes a frame
    case 4: return run_clip<8, 3, 40, 20, 9>(p, n_blocks, nth, run);     // fsdd with 8 points a lane
    default: return -1;
  }
}

template <typename S>
int gla_fused(const S* x_in, S* x_out, S* prev, const S* mag, const S* window, const S* inv_env, int64_t batch, int T, int n_fft, int hop, int64_t length, S coef, S eps, int tile_frames, int max_radix,
              int nth) {
  const ddfad::GlaFusedParams<S> p = ddfad::make_gla_fused_params<S>(x_in, x_out, prev, mag, window, inv_env, T, n_fft,
                                                                     hop, length, coef, eps, tile_frames, max_radix,
                                                                     nth);
  if (p.n_pass < 0) return -1;                           // fewer threads than butterflies of one pass
  run_blocks<S>(batch * p.n_tiles, nth, ddfad::gla_fused_smem_scalars(n_fft, hop, tile_frames),
                [&](int64_t block, int tid, int n, S* smem, const auto& sync) {
                  ddfad::gla_fused_block<S, 4>(p, block, tid, n, smem, sync);
                });
  return 0;
}

}  // namespace

extern "C" {

// The frame count T and every table are arguments, as in the launchers (ddfad_fast/dsp.py computes them).
void ddfad_frame_waves(const float* waves, const float* window, float* frames, int64_t batch, int64_t length,
                       int64_t T, int n_fft, int hop, float coef) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int k = 0; k < n_fft; ++k)
        frames[(b * T + t) * n_fft + k] = ddfad::frame_value(waves + b * length, length, t, k, n_fft, hop, coef,
                                                             coef != 0.0f ? 1.0f : 0.0f, window);
}

// The two post-FFT passes with explicit tile sizes (the launcher derives them from shared memory).
void ddfad_mfcc_post(const float* spec, const int64_t* bands, const float* weights, int mel_width, const float* dct,
                     const int64_t* start, const float* coef, float* db, float* tile_max, float* out, int64_t batch,
                     int T, int F, int n_mels, int n_mfcc, int width, float amin, float ref_db, float top_db,
                     int with_deltas, int mel_tile, int delta_tile, int nth) {
  const ddfad::MelDbParams mp =
      ddfad::make_mel_db_params(spec, bands, weights, mel_width, db, tile_max, T, F, n_mels, mel_tile, amin, ref_db);
  run_blocks<float>(batch * mp.n_tiles, nth, ddfad::mel_db_smem_floats(mel_tile, F, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::mel_db_block(mp, block, tid, n, smem, sync);
                    });
  const ddfad::DctDeltaParams dp = ddfad::make_dct_delta_params(db, tile_max, dct, start, coef, out, T, n_mels, n_mfcc,
                                                                width, mp.n_tiles, delta_tile, top_db,
                                                                with_deltas != 0);
  run_blocks<float>(batch * dp.n_tiles, nth, ddfad::dct_delta_smem_floats(delta_tile, width, n_mels, n_mfcc, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::dct_delta_block(dp, block, tid, n, smem, sync);
                    });
}

// The tiled fused pass (framing, FFT, power, mel, dB) with explicit tile size, then the DCT / delta pass.
int ddfad_fd_mfcc_fused(const float* waves, const float* window, const int64_t* bands, const float* weights,
                        int mel_width, const float* dct, const int64_t* start, const float* coef, float* db,
                        float* tile_max, float* out, int64_t batch, int64_t length, int T, int n_fft, int hop,
                        int n_mels, int n_mfcc, int width, float preemphasis, float amin, float ref_db, float top_db,
                        int with_deltas, int tile, int delta_tile, int max_radix, int nth) {
  const ddfad::StftMelParams p =
      ddfad::make_stft_mel_params(waves, window, bands, weights, mel_width, db, tile_max, length, T, n_fft, hop,
                                  n_mels, preemphasis, amin, ref_db, tile, max_radix, nth);
  if (p.n_pass < 0) return -1;
  run_blocks<float>(batch * p.n_tiles, nth, ddfad::stft_mel_smem_floats(n_fft, tile, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::stft_mel_block<4>(p, block, tid, n, smem, sync);
                    });
  const ddfad::DctDeltaParams dp = ddfad::make_dct_delta_params(db, tile_max, dct, start, coef, out, T, n_mels, n_mfcc,
                                                                width, p.n_tiles, delta_tile, top_db,
                                                                with_deltas != 0);
  run_blocks<float>(batch * dp.n_tiles, nth, ddfad::dct_delta_smem_floats(delta_tile, width, n_mels, n_mfcc, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::dct_delta_block(dp, block, tid, n, smem, sync);
                    });
  return 0;
}

// The per-clip kernel of shape `shape` (clip_shape) on n_blocks persistent blocks of nth threads (a multiple
// of 32). Returns 0, or -1 for an unknown shape.
int ddfad_fd_mfcc_clip(int shape, const float* waves, const float* window, int win_lo, int win_hi,
                       const int64_t* bands, const float* weights, int mel_width, const float* dct,
                       const int64_t* start, const float* coef, float* out, int64_t batch, int64_t length, int T,
                       int hop, float preemphasis, float amin, float ref_db, float top_db, int with_deltas,
                       int64_t n_blocks, int nth) {
  const ddfad::FdMfccClipParams p = ddfad::make_fd_mfcc_clip_params(
      waves, window, win_lo, win_hi, bands, weights, mel_width, dct, start, coef, out, batch, length, T, hop,
      preemphasis, amin, ref_db, top_db, with_deltas != 0);
  return clip_shape(shape, p, n_blocks, nth, true) < 0 ? -1 : 0;
}

// Shared memory (floats) of one block of that kernel, as the launcher computes it (nth = 256 there).
int64_t ddfad_fd_mfcc_clip_smem_floats(int shape, int mel_width, int64_t length, int T, int nth) {
  ddfad::FdMfccClipParams p{};
  p.mel_width = mel_width;
  p.length = static_cast<int>(length);
  p.T = T;
  return clip_shape(shape, p, 0, nth, false);
}

// Mismatches of fast_div against '/' for divisor d over every n < 2^20, and n in [2^31 - 2^20, 2^31).
int64_t ddfad_fast_div_errors(int d) {
  const ddfad::FastDiv f = ddfad::make_fast_div(d);
  int64_t bad = 0;
  for (int64_t n = 0; n < (int64_t{1} << 20); ++n) bad += ddfad::fast_div(static_cast<int>(n), f) != n / d;
  for (int64_t n = (int64_t{1} << 31) - (int64_t{1} << 20); n < (int64_t{1} << 31); ++n) {
    bad += ddfad::fast_div(static_cast<int>(n), f) != n / d;
  }
  return bad;
}

void ddfad_gla_step_f64(double* x, const double* cur, const double* prev, const double* mag, int64_t n,
                        int64_t n_freqs, double coef, double eps) {
  using C = ddfad::Cplx<double>;
  for (int64_t i = 0; i < n; ++i) {
    reinterpret_cast<C*>(x)[i] = ddfad::gla_update(reinterpret_cast<const C*>(cur)[i],
                                                   reinterpret_cast<const C*>(prev)[i], mag[i], coef, eps,
                                                   i % n_freqs == 0);
  }
}

void ddfad_overlap_add_f64(const double* frames, const double* window, const double* inv_env, double* out,
                           int64_t batch, int64_t T, int n_fft, int hop, int64_t length, int reframe) {
  const int64_t n_out = reframe ? T * n_fft : length;
  const ddfad::FastDiv div_hop = ddfad::make_fast_div(hop), div_n_fft = ddfad::make_fast_div(n_fft);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < n_out; ++j)
      out[b * n_out + j] = ddfad::ola_output(frames + b * T * n_fft, window, inv_env, static_cast<int>(j),
                                             static_cast<int>(T), n_fft, hop, div_hop, div_n_fft, length,
                                             reframe != 0);
}

// Returns 0, or -1 when nth is smaller than the butterflies of one FFT pass (the kernel uses 256 threads).
int ddfad_gla_fused_f64(const double* x_in, double* x_out, double* prev, const double* mag, const double* window,
                        const double* inv_env, int64_t batch, int T, int n_fft, int hop,
                        int64_t length, double coef, double eps, int tile_frames, int max_radix, int nth) {
  return gla_fused<double>(x_in, x_out, prev, mag, window, inv_env, batch, T, n_fft, hop, length, coef, eps,
                           tile_frames, max_radix, nth);
}

int ddfad_gla_fused_f32(const float* x_in, float* x_out, float* prev, const float* mag, const float* window,
                        const float* inv_env, int64_t batch, int T, int n_fft, int hop,
                        int64_t length, float coef, float eps, int tile_frames, int max_radix, int nth) {
  return gla_fused<float>(x_in, x_out, prev, mag, window, inv_env, batch, T, n_fft, hop, length, coef, eps,
                          tile_frames, max_radix, nth);
}

// Unnormalised FFT (sign -1, +1 if inverse) of `count` complex sequences of 2^log2m points, in place, with
// the fused kernel's Stockham passes.
int ddfad_fft_f64(double* data, int count, int log2m, const double* twiddle, int inverse, int max_radix, int nth) {
  uint64_t plan = 0;
  const int n_pass = ddfad::fft_schedule(log2m, max_radix, nth, &plan);
  if (n_pass < 0) return -1;
  auto* buf = reinterpret_cast<ddfad::Cplx<double>*>(data);
  auto* tw = reinterpret_cast<const ddfad::Cplx<double>*>(twiddle);
  run_blocks<double>(1, nth, 0, [&](int64_t, int tid, int n, double*, const auto& sync) {
    ddfad::fft_stockham<double, 4>(buf, count, log2m, plan, n_pass, tw, inverse != 0, tid, n, sync);
  });
  return 0;
}

// The shared-memory size formula the launcher uses, for the Python mirror of it.
int64_t ddfad_gla_fused_smem_scalars(int n_fft, int hop, int tile_frames) {
  return ddfad::gla_fused_smem_scalars(n_fft, hop, tile_frames);
}

}  // extern "C"
