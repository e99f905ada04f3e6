// Natural logarithm over arrays, vectorised with glibc's libmvec where the target has it (x86-64
// with glibc: SSE2 / AVX2 / AVX-512 variants, chosen at compile time; accuracy within 4 ulp, as
// glibc documents), else the scalar std::log. Inputs must be finite and > 0.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__x86_64__) && defined(__GLIBC__) && !defined(DDFAD_NO_LIBMVEC)
#include <immintrin.h>
#define DDFAD_HAVE_LIBMVEC 1
extern "C" {
#if defined(__AVX512F__)
__m512 _ZGVeN16v_logf(__m512);
__m512d _ZGVeN8v_log(__m512d);
#elif defined(__AVX2__)
__m256 _ZGVdN8v_logf(__m256);
__m256d _ZGVdN4v_log(__m256d);
#else
__m128 _ZGVbN4v_logf(__m128);
__m128d _ZGVbN2v_log(__m128d);
#endif
}
#endif

namespace ddfad {
namespace cpu {

// x[i] <- log(x[i]) for i in [0, n).
inline void log_inplace(float* x, int64_t n) {
  int64_t i = 0;
#ifdef DDFAD_HAVE_LIBMVEC
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _ZGVeN16v_logf(_mm512_loadu_ps(x + i)));
#elif defined(__AVX2__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _ZGVdN8v_logf(_mm256_loadu_ps(x + i)));
#else
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _ZGVbN4v_logf(_mm_loadu_ps(x + i)));
#endif
#endif
  for (; i < n; ++i) x[i] = std::log(x[i]);
}

inline void log_inplace(double* x, int64_t n) {
  int64_t i = 0;
#ifdef DDFAD_HAVE_LIBMVEC
#if defined(__AVX512F__)
  for (; i + 8 <= n; i += 8) _mm512_storeu_pd(x + i, _ZGVeN8v_log(_mm512_loadu_pd(x + i)));
#elif defined(__AVX2__)
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, _ZGVdN4v_log(_mm256_loadu_pd(x + i)));
#else
  for (; i + 2 <= n; i += 2) _mm_storeu_pd(x + i, _ZGVbN2v_log(_mm_loadu_pd(x + i)));
#endif
#endif
  for (; i < n; ++i) x[i] = std::log(x[i]);
}

}  // namespace cpu
}  // namespace ddfad
