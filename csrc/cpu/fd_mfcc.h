// CPU FD-MFCC operator ddfad::fd_mfcc (schema in ops.cpp).
#pragma once
#include <ATen/ATen.h>
#include <optional>

namespace ddfad {
namespace cpu {

// waves (B, L) float32/float64 -> (B, 3, n_mfcc, T) (or (B, n_mfcc, T) without deltas). T (n_frames), the
// window's non-zero taps [win_lo, win_hi) and every table come from ddfad_fast/dsp.py (feature_tables).
at::Tensor fd_mfcc_cpu(const at::Tensor& waves, const at::Tensor& window, int64_t win_lo, int64_t win_hi,
                       const at::Tensor& mel_bands, const at::Tensor& mel_weights, const at::Tensor& dct,
                       const at::Tensor& delta_start, const at::Tensor& delta_coef, int64_t n_frames,
                       int64_t hop_length, double preemphasis, double amin, double ref_db,
                       std::optional<double> top_db, bool with_deltas, int64_t group);

}  // namespace cpu
}  // namespace ddfad
