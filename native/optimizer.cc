// The optimizer's kernels: AdamW's update, and gradient clipping's Σx² and scale.
#include <omp.h>

#include <cmath>

#include "kernels.h"

namespace weitiao {

void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWHyper& h) {
  double lr = h.lr, b1 = h.beta1, b2 = h.beta2, eps = h.eps, wd = h.weightDecay;
  double step = h.step;
  float gradScale = static_cast<float>(h.gradScale);  // clipping's coefficient, as Scale would apply it
  double bc1 = 1 - std::pow(b1, step), bc2Sqrt = std::sqrt(1 - std::pow(b2, step));
  float stepSize = static_cast<float>(lr / bc1), decay = static_cast<float>(1 - lr * wd);
  float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2), omb1 = static_cast<float>(1 - b1),
        omb2 = static_cast<float>(1 - b2), fbc2 = static_cast<float>(bc2Sqrt), feps = static_cast<float>(eps);
  bool doDecay = wd != 0;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] * gradScale;
    float pi = doDecay ? p[i] * decay : p[i];
    float mi = fb1 * m[i] + omb1 * gi;
    float vi = fb2 * v[i] + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - stepSize * mi / (std::sqrt(vi) / fbc2 + feps);
  }
}

double sumSquares(const float* x, int64_t n) {
  double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale(float* x, int64_t n, double factor) {
  float s = static_cast<float>(factor);
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) x[i] *= s;
}

}  // namespace weitiao
