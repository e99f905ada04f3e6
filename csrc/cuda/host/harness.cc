// CPU harness of the CUDA kernel bodies (tests/test_cuda_logic.py builds it with g++ into a shared library
// and calls it through ctypes). Each "block" runs the same body function as the __global__ kernel, with
// `nth` host threads, a std::barrier in place of __syncthreads, and shared memory poisoned with NaN, so
// index arithmetic, barrier placement and unwritten shared memory show up as wrong or NaN results.
// Not part of the extension: setup.py compiles csrc/cuda/*.cu and *.cpp only.
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

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

template <typename S>
int gla_fused(const S* x_in, S* x_out, S* prev, const S* mag, const S* window, const S* inv_env, const S* twiddle,
              int64_t batch, int T, int n_fft, int hop, int64_t length, S coef, S eps, int tile_frames, int max_radix,
              int nth) {
  ddfad::GlaFusedParams<S> p;
  p.x_in = reinterpret_cast<const ddfad::Cplx<S>*>(x_in);
  p.x_out = reinterpret_cast<ddfad::Cplx<S>*>(x_out);
  p.prev = reinterpret_cast<ddfad::Cplx<S>*>(prev);
  p.mag = mag;
  p.window = window;
  p.inv_env = inv_env;
  p.twiddle = reinterpret_cast<const ddfad::Cplx<S>*>(twiddle);
  p.T = T;
  p.n_fft = n_fft;
  int bits = 0;
  while ((1 << bits) < n_fft / 2) ++bits;
  p.log2_half = bits;
  p.hop = hop;
  p.halo = (n_fft - 1) / hop;
  p.tile_frames = tile_frames;
  p.n_tiles = (T + tile_frames - 1) / tile_frames;
  p.length = length;
  p.coef = coef;
  p.eps = eps;
  p.n_pass = ddfad::fft_schedule(bits, max_radix, nth, &p.fft_plan);
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
void ddfad_mfcc_post(const float* spec, const float* mel, const int* bands, const float* dct, const int* start,
                     const float* coef, float* db, float* tile_max, float* out, int64_t batch, int T, int F,
                     int n_mels, int n_mfcc, int width, float amin, float ref_db, float top_db, int mel_tile,
                     int delta_tile, int nth) {
  ddfad::MelDbParams mp;
  mp.spec = reinterpret_cast<const ddfad::Cplx<float>*>(spec);
  mp.mel = mel;
  mp.bands = bands;
  mp.db = db;
  mp.tile_max = tile_max;
  mp.T = T;
  mp.F = F;
  mp.n_mels = n_mels;
  mp.tile_frames = mel_tile;
  mp.n_tiles = (T + mel_tile - 1) / mel_tile;
  mp.amin = amin;
  mp.ref_db = ref_db;
  run_blocks<float>(batch * mp.n_tiles, nth, ddfad::mel_db_smem_floats(mel_tile, F, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::mel_db_block(mp, block, tid, n, smem, sync);
                    });
  ddfad::DctDeltaParams dp;
  dp.db = db;
  dp.tile_max = tile_max;
  dp.dct = dct;
  dp.start = start;
  dp.coef = coef;
  dp.out = out;
  dp.T = T;
  dp.n_mels = n_mels;
  dp.n_mfcc = n_mfcc;
  dp.width = width;
  dp.n_mel_tiles = mp.n_tiles;
  dp.tile_frames = delta_tile;
  dp.n_tiles = (T + delta_tile - 1) / delta_tile;
  dp.top_db = top_db;
  dp.use_top_db = top_db >= 0.0f;
  run_blocks<float>(batch * dp.n_tiles, nth, ddfad::dct_delta_smem_floats(delta_tile, width, n_mels, n_mfcc, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::dct_delta_block(dp, block, tid, n, smem, sync);
                    });
}

// The fused pass (framing, FFT, power, mel, dB) with explicit tile size, then the DCT / delta pass.
int ddfad_fd_mfcc_fused(const float* waves, const float* window, const float* twiddle, const float* mel,
                        const int* bands, const float* dct, const int* start, const float* coef, float* db,
                        float* tile_max, float* out, int64_t batch, int64_t length, int T, int n_fft, int hop,
                        int n_mels, int n_mfcc, int width, float preemphasis, float amin, float ref_db, float top_db,
                        int tile, int delta_tile, int max_radix, int nth) {
  ddfad::StftMelParams p;
  p.waves = waves;
  p.window = window;
  p.twiddle = reinterpret_cast<const ddfad::Cplx<float>*>(twiddle);
  p.mel = mel;
  p.bands = bands;
  p.db = db;
  p.tile_max = tile_max;
  p.length = length;
  p.T = T;
  p.n_fft = n_fft;
  int bits = 0;
  while ((1 << bits) < n_fft / 2) ++bits;
  p.log2_half = bits;
  p.hop = hop;
  p.n_mels = n_mels;
  p.tile_frames = tile;
  p.n_tiles = (p.T + tile - 1) / tile;
  p.coef = preemphasis;
  p.zi_scale = preemphasis != 0.0f ? 1.0f : 0.0f;
  p.amin = amin;
  p.ref_db = ref_db;
  p.n_pass = ddfad::fft_schedule(bits, max_radix, nth, &p.fft_plan);
  if (p.n_pass < 0) return -1;
  run_blocks<float>(batch * p.n_tiles, nth, ddfad::stft_mel_smem_floats(n_fft, tile, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::stft_mel_block<4>(p, block, tid, n, smem, sync);
                    });
  ddfad::DctDeltaParams dp;
  dp.db = db;
  dp.tile_max = tile_max;
  dp.dct = dct;
  dp.start = start;
  dp.coef = coef;
  dp.out = out;
  dp.T = p.T;
  dp.n_mels = n_mels;
  dp.n_mfcc = n_mfcc;
  dp.width = width;
  dp.n_mel_tiles = p.n_tiles;
  dp.tile_frames = delta_tile;
  dp.n_tiles = (p.T + delta_tile - 1) / delta_tile;
  dp.top_db = top_db;
  dp.use_top_db = top_db >= 0.0f;
  run_blocks<float>(batch * dp.n_tiles, nth, ddfad::dct_delta_smem_floats(delta_tile, width, n_mels, n_mfcc, nth),
                    [&](int64_t block, int tid, int n, float* smem, const auto& sync) {
                      ddfad::dct_delta_block(dp, block, tid, n, smem, sync);
                    });
  return 0;
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
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < n_out; ++j)
      out[b * n_out + j] = ddfad::ola_output(frames + b * T * n_fft, window, inv_env, static_cast<int>(j),
                                             static_cast<int>(T), n_fft, hop, length, reframe != 0);
}

// Returns 0, or -1 when nth is smaller than the butterflies of one FFT pass (the kernel uses 256 threads).
int ddfad_gla_fused_f64(const double* x_in, double* x_out, double* prev, const double* mag, const double* window,
                        const double* inv_env, const double* twiddle, int64_t batch, int T, int n_fft, int hop,
                        int64_t length, double coef, double eps, int tile_frames, int max_radix, int nth) {
  return gla_fused<double>(x_in, x_out, prev, mag, window, inv_env, twiddle, batch, T, n_fft, hop, length, coef, eps,
                           tile_frames, max_radix, nth);
}

int ddfad_gla_fused_f32(const float* x_in, float* x_out, float* prev, const float* mag, const float* window,
                        const float* inv_env, const float* twiddle, int64_t batch, int T, int n_fft, int hop,
                        int64_t length, float coef, float eps, int tile_frames, int max_radix, int nth) {
  return gla_fused<float>(x_in, x_out, prev, mag, window, inv_env, twiddle, batch, T, n_fft, hop, length, coef, eps,
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
