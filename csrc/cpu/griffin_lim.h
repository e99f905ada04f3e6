// CPU kernels of fast Griffin-Lim: operators ddfad::gla_step, ddfad::overlap_add (same schemas as the
// CUDA ones) and ddfad::griffin_lim, the whole loop (schemas in ops.cpp).
#pragma once
#include <ATen/ATen.h>

namespace ddfad {
namespace cpu {

// x <- magnitude * a / (|a| + tiny), a = cur - momentum / (1 + momentum) * prev; x, cur, prev complex,
// magnitude real of the same precision, all with the same number of elements.
void gla_step_cpu(at::Tensor x, const at::Tensor& cur, const at::Tensor& prev, const at::Tensor& magnitude,
                  double momentum);

// Inverse STFT of time frames (B, T, n_fft) by windowed overlap-add, normalised by inv_envelope
// (n_fft + hop*(T-1)); the window's taps outside [win_lo, win_hi) are zero (dsp.window_support).
// reframe=false: the signal (B, length); reframe=true: its windowed, centre-zero-padded frames
// (B, T, n_fft), ready for the next rfft.
at::Tensor overlap_add_cpu(const at::Tensor& frames, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
                           const at::Tensor& inv_envelope, int64_t hop_length, int64_t length, bool reframe);

// The whole fast Griffin-Lim loop (librosa.griffinlim semantics, center=True, zero padding):
// magnitude (B, F, T) real, init_phase (B, F, T) complex unit phasors -> signal (B, length).
at::Tensor griffin_lim_cpu(const at::Tensor& magnitude, const at::Tensor& init_phase, const at::Tensor& window,
                           int64_t win_lo, int64_t win_hi, const at::Tensor& inv_envelope, int64_t hop_length,
                           int64_t n_iter, double momentum, int64_t length, int64_t group);

}  // namespace cpu
}  // namespace ddfad
