// Pointwise kernels: add, GELU (erf, with bf16 variants), tanh, gelu_new and relu, dropout.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace weitiao {
namespace {

template <typename In, typename Out>
void gelu(const In* x, Out* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; i++) {
    const float v = valueOf(x[i]);
    storeAs(y[i], 0.5f * v * (1.0f + erfFast(v * 0.70710678118654752f)));
  }
}

}  // namespace

void add(const float* a, const float* b, float* o, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i];
}

void geluForward(const float* x, float* y, int64_t n, uint16_t* y16, const uint16_t* x16) {
  if (x16 && y16) gelu(x16, y16, n);
  else if (x16) gelu(x16, y, n);
  else if (y16) gelu(x, y16, n);
  else gelu(x, y, n);
}

void geluBackward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * geluGrad(x[i]);
}

void tanhForward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = std::tanh(x[i]);
}

void tanhBackward(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

void activationForward(bool relu, const float* x, float* y, int64_t n) {
  const float c = 0.7978845608028654f;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = relu ? (v > 0.f ? v : 0.f) : 0.5f * v * (1.f + std::tanh(c * (v + 0.044715f * v * v * v)));
  }
}

void activationBackward(bool relu, const float* x, const float* dy, float* dx, int64_t n) {
  const float c = 0.7978845608028654f;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    if (relu) {
      dx[i] = v > 0.f ? dy[i] : 0.f;
    } else {
      const float t = std::tanh(c * (v + 0.044715f * v * v * v));
      dx[i] = dy[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * c * (1.f + 3.f * 0.044715f * v * v));
    }
  }
}

void dropoutForward(const float* x, float* y, uint8_t* keep, int64_t n, double p, uint32_t seed, uint32_t offset) {
  uint32_t threshold = dropThreshold(p);
  float s = static_cast<float>(1.0 / (1.0 - p));
  const int64_t chunk = 16384;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t c = 0; c < n; c += chunk)
    dropoutRow(x + c, keep + c, offset + static_cast<uint32_t>(c), std::min(chunk, n - c), seed, threshold, s, y + c);
}

void dropoutBackward(const float* dy, float* dx, const uint8_t* keep, int64_t n, double p) {
  float s = static_cast<float>(1.0 / (1.0 - p));
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) dx[i] = keep[i] ? dy[i] * s : 0.0f;
}

}  // namespace weitiao
