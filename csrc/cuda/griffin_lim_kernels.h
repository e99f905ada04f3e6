// Launchers of the fast Griffin-Lim CUDA kernels. Plain C++ interface: raw pointers, sizes and a
// stream; no torch headers. Semantics match kernels/griffin_lim.py (librosa griffinlim, center=True).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace ddfad {

// x <- mag * a / (|a| + eps), a = cur - coef * prev, on n complex bins stored as (re, im) pairs.
template <typename scalar_t>
cudaError_t launch_gla_step(scalar_t* x, const scalar_t* cur, const scalar_t* prev, const scalar_t* mag,
                            int64_t n, scalar_t coef, scalar_t eps, cudaStream_t stream);

// Overlap-add gather of frames (B, T, n_fft) with window (n_fft) and inverse envelope
// (n_fft + hop*(T-1)). reframe=false: out (B, length) is the signal; reframe=true: out (B, T, n_fft)
// holds the windowed frames of that signal (center zero padding) for the next rfft.
template <typename scalar_t>
cudaError_t launch_overlap_add(const scalar_t* frames, const scalar_t* window, const scalar_t* inv_env,
                               scalar_t* out, int64_t batch, int64_t n_frames, int64_t n_fft, int64_t hop,
                               int64_t length, bool reframe, cudaStream_t stream);

}  // namespace ddfad
