// Shared helpers of the CPU kernels: argument checks and the batch-parallel loop.
#pragma once
#include <algorithm>
#include <cstdint>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

// MKL's C entry point of mkl_set_num_threads_local (mkl_service.h maps the name to it). MKL is linked
// into libtorch_cpu on x86 builds, which exports it; weak, so builds without MKL load too.
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

namespace ddfad {
namespace cpu {

// Keeps at::fft calls of the current thread on that thread for the guard's scope. Outside an active
// OpenMP region MKL threads every FFT call by itself; our calls are small per-group batches inside
// our own batch-parallel loop, where that only adds synchronisation (and, on a busy machine, waits
// for descheduled threads). No-op without MKL (pocketfft runs on the calling thread).
class SingleThreadedFFT {
 public:
  SingleThreadedFFT() : previous_(MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : 0) {}
  ~SingleThreadedFFT() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(previous_);
  }
  SingleThreadedFFT(const SingleThreadedFFT&) = delete;
  SingleThreadedFFT& operator=(const SingleThreadedFFT&) = delete;

 private:
  int previous_;
};

inline void check_cpu_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void check_dtype(const at::Tensor& t, at::ScalarType want, const char* name) {
  TORCH_CHECK(t.scalar_type() == want, name, " must be ", want, ", got ", t.scalar_type());
}

// The window's non-zero taps [lo, hi) (ddfad_fast/dsp.py window_support) must lie inside its n_fft taps.
inline void check_support(int64_t lo, int64_t hi, int64_t n_fft) {
  TORCH_CHECK(0 <= lo && lo <= hi && hi <= n_fft, "window support [", lo, ", ", hi, ") is outside the window's ",
              n_fft, " taps");
}

// Working-set budget of one task's group of clips, so the group's frames and spectra stay in the core's
// cache between stages: 1.25 MiB, the best of the sizes measured on a 2 MiB-L2 Xeon (both presets, both
// dtypes, fd_mfcc and Griffin-Lim).
constexpr int64_t kGroupBytes = int64_t{5} << 18;

// Clips per group: `requested` when > 0, else as many as fit kGroupBytes, but no more than keeps every
// thread busy (at least 1).
inline int64_t clips_per_group(int64_t requested, int64_t bytes_per_clip, int64_t batch) {
  if (requested > 0) return requested;
  const int64_t fit = kGroupBytes / std::max<int64_t>(1, bytes_per_clip);
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  return std::max<int64_t>(1, std::min(fit, (batch + threads - 1) / threads));
}

// Runs fn(begin, end) over [0, n) on torch's intra-op thread pool (OpenMP in torch's CPU builds),
// at least `grain` items per task. Inside fn a task owns its scratch memory for the whole range.
template <typename F>
inline void parallel_over(int64_t n, int64_t grain, const F& fn) {
  if (n <= 0) return;
  at::parallel_for(0, n, grain, fn);
}

}  // namespace cpu
}  // namespace ddfad
