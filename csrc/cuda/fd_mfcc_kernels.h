// Launchers of the FD-MFCC CUDA kernels. Plain C++ interface: raw pointers, sizes and a stream; no torch
// headers. Semantics: fd_mfcc_math.h and fd_mfcc_clip.h. The frame count T and every table come from
// ddfad_fast.ops.tables in the layout of the one schema ddfad::fd_mfcc (the CPU operator's): the window
// (n_fft) and its non-zero taps [win_lo, win_hi), the mel filterbank in band form (bands (n_mels, 2) int64,
// weights (n_mels, mel_width)), the DCT (n_mfcc, n_mels), the delta start (T,) int64 and coefficients
// (2, width, T). top_db < 0 disables the per-clip floor; with_deltas = false writes (B, n_mfcc, T).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace ddfad {

// ---- one clip per block (fd_mfcc_clip.cu): the shapes of the shipped presets -------------------------------
// Dynamic shared memory of one block for this shape and clip length, or 0 when no instance is compiled for it
// (then the tiled kernels below run).
int64_t fd_mfcc_clip_smem_bytes(int64_t n_fft, int64_t n_mels, int64_t n_mfcc, int64_t width, int64_t mel_width,
                                int64_t length, int64_t n_frames);

// waves (B, L) -> out; a persistent grid of at most max_blocks blocks (0: SMs x the blocks per SM the instance
// is compiled for).
cudaError_t launch_fd_mfcc_clip(const float* waves, const float* window, int64_t win_lo, int64_t win_hi,
                                const int64_t* mel_bands, const float* mel_weights, int64_t mel_width,
                                const float* dct, const int64_t* delta_start, const float* delta_coef, float* out,
                                int64_t batch, int64_t length, int64_t n_frames, int64_t n_fft, int64_t hop,
                                int64_t n_mels, int64_t n_mfcc, int64_t width, float preemphasis, float amin,
                                float ref_db, float top_db, bool with_deltas, int64_t max_blocks,
                                cudaStream_t stream);

// ---- tiles of frames (fd_mfcc_kernels.cu): any shape ---------------------------------------------------------
// waves (B, L) -> frames (B*T, n_fft), T = n_frames: pre-emphasis, centre zero padding, window.
cudaError_t launch_frame_waves(const float* waves, const float* window, float* frames, int64_t batch, int64_t length,
                               int64_t n_frames, int64_t n_fft, int64_t hop, float coef, cudaStream_t stream);

// Frames per block of the mel pass after cuFFT, and its number of tiles per clip (the size of tile_max).
int64_t mel_db_tile_frames(int64_t n_freqs);
int64_t mel_db_tiles(int64_t n_frames, int64_t n_freqs);

// spec (B, T, F) complex64 as (re, im) pairs -> out. db (B, T, n_mels) and tile_max (B, mel_db_tiles(T, F)) are
// scratch.
cudaError_t launch_mfcc_post(const float* spec, const int64_t* mel_bands, const float* mel_weights,
                             int64_t mel_width, const float* dct, const int64_t* delta_start,
                             const float* delta_coef, float* db, float* tile_max, float* out, int64_t batch,
                             int64_t n_frames, int64_t n_freqs, int64_t n_mels, int64_t n_mfcc, int64_t width,
                             float amin, float ref_db, float top_db, bool with_deltas, cudaStream_t stream);

// Output frames per block of the tiled fused pass (0 = the most, <= 16, that fit 48 KB of shared memory), and
// whether it handles n_fft (a power of two in [4, 8192] whose FFT fits passes of at most max_radix points).
int64_t stft_mel_tile_frames(int64_t n_fft, int64_t tile_frames);
bool stft_mel_supported(int64_t n_fft, int64_t max_radix);

// waves (B, L) -> out for power-of-two n_fft, without cuFFT: one kernel frames, transforms (shared memory),
// takes the power, the sparse mel product and dB of a tile of frames; the DCT / delta pass follows.
// db (B, T, n_mels) and tile_max (B, ceil(T / tile)) are scratch.
cudaError_t launch_fd_mfcc_fused(const float* waves, const float* window, const int64_t* mel_bands,
                                 const float* mel_weights, int64_t mel_width, const float* dct,
                                 const int64_t* delta_start, const float* delta_coef, float* db, float* tile_max,
                                 float* out, int64_t batch, int64_t length, int64_t n_frames, int64_t n_fft,
                                 int64_t hop, int64_t n_mels, int64_t n_mfcc, int64_t width, float coef, float amin,
                                 float ref_db, float top_db, bool with_deltas, int64_t tile_frames,
                                 int64_t max_radix, cudaStream_t stream);

}  // namespace ddfad
