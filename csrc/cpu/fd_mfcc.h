// CPU FD-MFCC operator ddfad::fd_mfcc (schema in ops.cpp).
#pragma once
#include <ATen/ATen.h>
#include <optional>

namespace ddfad {
namespace cpu {

// waves (B, L) float32/float64 -> (B, 3, n_mfcc, T) (or (B, n_mfcc, T) without deltas), T = 1 + L // hop.
at::Tensor fd_mfcc_cpu(const at::Tensor& waves, const at::Tensor& window, const at::Tensor& mel_bands,
                       const at::Tensor& mel_weights, const at::Tensor& dct, const at::Tensor& delta_start,
                       const at::Tensor& delta_coef, int64_t hop_length, double preemphasis, double amin,
                       double ref_db, std::optional<double> top_db, bool with_deltas, int64_t group);

}  // namespace cpu
}  // namespace ddfad
