// Launchers of the FD-MFCC CUDA kernels (framing before cuFFT, mel/dB and DCT/delta passes after it).
// Plain C++ interface: raw pointers, sizes and a stream; no torch headers. Semantics: fd_mfcc_math.h.
// The frame count T and every table come from ddfad_fast/dsp.py (the callers pass them).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace ddfad {

// waves (B, L) -> frames (B*T, n_fft), T = n_frames: pre-emphasis, centre zero padding, window.
cudaError_t launch_frame_waves(const float* waves, const float* window, float* frames, int64_t batch, int64_t length,
                               int64_t n_frames, int64_t n_fft, int64_t hop, float coef, cudaStream_t stream);

// Frames per block of the two post-FFT passes, and the number of mel-pass tiles per clip (the size of
// the tile_max scratch).
int64_t mel_db_tile_frames(int64_t n_freqs);
int64_t mel_db_tiles(int64_t n_frames, int64_t n_freqs);

// spec (B, T, F) complex64 as (re, im) pairs -> out (B, 3, n_mfcc, T). delta_start (T) and delta_coef
// (2, width, T): dsp.delta_bands. db (B, T, n_mels) and tile_max (B, mel_db_tiles(T, F)) are scratch.
// top_db < 0 disables the per-clip floor.
cudaError_t launch_mfcc_post(const float* spec, const float* mel, const int* bands, const float* dct,
                             const int* delta_start, const float* delta_coef, float* db, float* tile_max, float* out,
                             int64_t batch, int64_t n_frames, int64_t n_freqs, int64_t n_mels, int64_t n_mfcc,
                             int64_t width, float amin, float ref_db, float top_db, cudaStream_t stream);

// Output frames per block of the fused pass (0 = the most, <= 16, that fit 48 KB of shared memory), and
// whether it handles n_fft (a power of two in [4, 8192] whose FFT fits passes of at most max_radix points).
int64_t stft_mel_tile_frames(int64_t n_fft, int64_t tile_frames);
bool stft_mel_supported(int64_t n_fft, int64_t max_radix);

// waves (B, L) -> out (B, 3, n_mfcc, T), T = n_frames, for power-of-two n_fft: one kernel frames,
// transforms (shared memory), takes the power, the sparse mel product and dB of a tile of frames; the
// DCT / delta pass follows. db (B, T, n_mels) and tile_max (B, ceil(T / tile)) are scratch; twiddle
// (n_fft/2) complex exp(-2 pi i k / n_fft); top_db < 0 disables the per-clip floor.
cudaError_t launch_fd_mfcc_fused(const float* waves, const float* window, const float* twiddle, const float* mel,
                                 const int* bands, const float* dct, const int* delta_start, const float* delta_coef,
                                 float* db, float* tile_max, float* out, int64_t batch, int64_t length,
                                 int64_t n_frames, int64_t n_fft, int64_t hop, int64_t n_mels, int64_t n_mfcc,
                                 int64_t width, float coef, float amin,
                                 float ref_db, float top_db, int64_t tile_frames, int64_t max_radix,
                                 cudaStream_t stream);

}  // namespace ddfad
