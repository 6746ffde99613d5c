// weitiao native backend: what every kernel file shares. bf16 conversion, the dropout RNG, the fast math the fused
// loops use, and the conversion of GEMM inputs to bf16. Everything here is inline (or a template) so that each kernel
// compiles exactly as it did when the addon was one file: the fused loops inline these helpers.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace weitiao {

// ------------------------------------------------------------------------------------------------ RNG
// Same counter-based hash as src/util/rng.ts, so both backends draw identical dropout masks.

inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}
inline uint32_t streamDraw(uint32_t seed, uint32_t counter) { return hash32(seed ^ hash32(counter)); }
inline uint32_t dropThreshold(double p) {
  double t = std::floor(p * 4294967296.0);
  return t >= 4294967295.0 ? 0xffffffffu : static_cast<uint32_t>(t);
}

// ------------------------------------------------------------------------------------------------ bf16

inline uint16_t toBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

// Store a result as fp32 or as bf16: kernels that write either are templates over the output type.
inline void storeAs(float& o, float v) { o = v; }
inline void storeAs(uint16_t& o, float v) { o = toBf16(v); }
// ... and read one back as fp32 (bf16 widens exactly).
inline float valueOf(float v) { return v; }
inline float valueOf(uint16_t h) { return __builtin_bit_cast(float, static_cast<uint32_t>(h) << 16); }

// out = dropout(x) for n consecutive elements: the mask drawn from the stream at `counter` (kept in kr), the kept
// entries rescaled, stored as Out (fp32, or bf16 for attention's P'·V operand). Every dropout kernel draws through it.
template <typename Out>
inline void dropoutRow(const float* __restrict x, uint8_t* kr, uint32_t counter, int64_t n, uint32_t seed,
                       uint32_t threshold, float keepScale, Out* out) {
#pragma omp simd
  for (int64_t j = 0; j < n; j++) {
    bool kept = streamDraw(seed, counter + static_cast<uint32_t>(j)) >= threshold;
    kr[j] = kept ? 1 : 0;
    storeAs(out[j], kept ? x[j] * keepScale : 0.0f);
  }
}

// Convert a rows×cols block with row stride ld into a contiguous bf16 buffer.
inline void convertBf16To(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* d) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; r++) {
    const float* s = src + r * ld;
    uint16_t* o = d + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; c++) o[c] = toBf16(s[c]);
  }
}
inline void convertBf16(const float* src, int64_t rows, int64_t cols, int64_t ld, std::vector<uint16_t>& dst) {
  dst.resize(static_cast<size_t>(rows * cols));
  convertBf16To(src, rows, cols, ld, dst.data());
}

// A Bf16Copy (src/backend/types.ts) as a kernel receives it: its buffer (or null) and whether it is filled.
struct CopyArg {
  uint16_t* data;
  bool ready;
};

// The bf16 form of a contiguous GEMM input: the caller's copy, converted only if not yet filled, or else a
// conversion into scratch.
inline const uint16_t* bf16Input(const float* src, int64_t rows, int64_t cols, CopyArg copy, std::vector<uint16_t>& scratch) {
  if (!copy.data) {
    convertBf16(src, rows, cols, cols, scratch);
    return scratch.data();
  }
  if (!copy.ready) convertBf16To(src, rows, cols, cols, copy.data);
  return copy.data;
}

// ------------------------------------------------------------------------------------------------ math

// erf for float inputs: rational approximation (odd polynomial over even polynomial) accurate to a few ulp,
// branch-free so it vectorises.
inline float erfFast(float v) {
  float x = std::min(4.0f, std::max(-4.0f, v));
  float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

// expf to about 1 ulp (Cephes' range reduction and polynomial), branch-free so loops vectorise.
inline float expFast(float x) {
  x = std::min(88.72283905206835f, std::max(-87.33654475f, x));
  float z = std::floor(1.44269504088896341f * x + 0.5f);
  x -= z * 0.693359375f;
  x -= z * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * x + 1.3981999507E-3f;
  p = p * x + 8.3334519073E-3f;
  p = p * x + 4.1665795894E-2f;
  p = p * x + 1.6666665459E-1f;
  p = p * x + 5.0000001201E-1f;
  float y = p * x * x + x + 1.0f;
  return y * __builtin_bit_cast(float, (static_cast<int32_t>(z) + 127) << 23);
}

// gelu'(v) = Φ(v) + v·φ(v)
inline float geluGrad(float v) {
  float cdf = 0.5f * (1.0f + erfFast(v * 0.70710678118654752f));
  float pdf = 0.3989422804014327f * expFast(-0.5f * v * v);
  return cdf + v * pdf;
}

#if defined(__AVX512BF16__)
// 16 bf16 values of row 2p (low half) and the same 16 columns of row 2p+1 (high half) → the 16 pairs
// (row 2p, row 2p+1) of those columns, one 32-bit word each: the layout of a vdpbf16ps operand.
inline __m512i interleaveRowPair(__m512i rows) {
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                         22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, rows);
}
#endif

}  // namespace weitiao
