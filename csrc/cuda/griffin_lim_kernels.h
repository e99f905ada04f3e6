// Launchers of the fast Griffin-Lim CUDA kernels. Plain C++ interface: raw pointers, sizes and a
// stream; no torch headers. Semantics: griffin_lim_math.h (librosa griffinlim, center=True).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace ddfad {

// x <- mag * a / (|a| + eps), a = cur - coef * prev, on n complex bins stored as (re, im) pairs; rows of
// n_freqs bins, whose bin 0 (DC) is stored real.
template <typename scalar_t>
cudaError_t launch_gla_step(scalar_t* x, const scalar_t* cur, const scalar_t* prev, const scalar_t* mag,
                            int64_t n, int64_t n_freqs, scalar_t coef, scalar_t eps, cudaStream_t stream);

// Overlap-add gather of frames (B, T, n_fft) with window (n_fft) and inverse envelope
// (n_fft + hop*(T-1)). reframe=false: out (B, length) is the signal; reframe=true: out (B, T, n_fft)
// holds the windowed frames of that signal (center zero padding) for the next rfft.
template <typename scalar_t>
cudaError_t launch_overlap_add(const scalar_t* frames, const scalar_t* window, const scalar_t* inv_env,
                               scalar_t* out, int64_t batch, int64_t n_frames, int64_t n_fft, int64_t hop,
                               int64_t length, bool reframe, cudaStream_t stream);

// Shared memory (bytes) of one block of the fused iteration with `tile_frames` output frames.
int64_t gla_fused_smem_bytes(int64_t n_fft, int64_t hop, int64_t tile_frames, int64_t scalar_bytes);

// Output frames per block chosen when the caller passes 0: the most (<= 16) that fit in 48 KB, else 1.
int64_t gla_fused_default_tile(int64_t n_fft, int64_t hop, int64_t scalar_bytes);

// Whether the fused iteration's FFT can run n_fft with passes of at most max_radix (2, 4, 8, 16) points.
bool gla_fused_fft_supported(int64_t n_fft, int64_t max_radix);

// One fused iteration for power-of-two n_fft: x_out <- step(STFT(ISTFT(x_in)), prev), prev <- the rebuilt
// spectrum. Spectra (B, T, n_fft/2+1) complex as (re, im) pairs; tile_frames output frames per block
// (0: gla_fused_default_tile); FFT passes of at most max_radix points (the twiddles are computed in the kernel).
template <typename scalar_t>
cudaError_t launch_gla_fused_step(const scalar_t* x_in, scalar_t* x_out, scalar_t* prev, const scalar_t* mag,
                                  const scalar_t* window, const scalar_t* inv_env, int64_t batch, int64_t n_frames,
                                  int64_t n_fft, int64_t hop, int64_t length, scalar_t coef, scalar_t eps,
                                  int64_t tile_frames, int64_t max_radix, cudaStream_t stream);

}  // namespace ddfad
