// LayerNorm forward and backward, and the sublayer output's dropout + residual add + LayerNorm fused.
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels.h"

namespace weitiao {
namespace {

// One LayerNorm row: statistics in double (`omp simd` lets the reductions vectorise: 8 partial sums, then combined);
// y16, when given, receives y in bf16 as well.
inline void layerNormRow(const float* xr, const float* g, const float* b, float* yr, uint16_t* y16, float& mean,
                         float& rstd, int64_t cols, double eps) {
  double mu = 0;
#pragma omp simd reduction(+ : mu)
  for (int64_t j = 0; j < cols; j++) mu += xr[j];
  mu /= cols;
  double var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t j = 0; j < cols; j++) {
    double d = xr[j] - mu;
    var += d * d;
  }
  var /= cols;
  float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
  float m = static_cast<float>(mu);
  mean = m;
  rstd = rs;
#pragma omp simd
  for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - m) * rs * g[j] + b[j];
  if (y16) {
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) y16[j] = toBf16(yr[j]);
  }
}

}  // namespace

void layerNormForward(const float* x, const float* g, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                      int64_t cols, double eps) {
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
  for (int64_t r = 0; r < rows; r++) layerNormRow(x + r * cols, g, b, y + r * cols, nullptr, mean[r], rstd[r], cols, eps);
}

// sum = dropout(x) + residual; y = LayerNorm(sum): DropoutForward, Add and LayerNormForward fused row by row (the
// row stays in L1 between the three), with the same mask stream and the same arithmetic as the three kernels.
void dropoutAddLayerNorm(const DropoutAddLayerNormArgs& a) {
  const float *x = a.x, *res = a.residual, *g = a.gamma, *b = a.beta;
  float *sum = a.sum, *y = a.y, *mean = a.mean, *rstd = a.rstd;
  const int64_t rows = a.rows, cols = a.cols;
  const double eps = a.eps;
  const bool drop = a.dropout;
  const double p = drop ? a.p : 0.0;
  const uint32_t seed = a.seed, offset = a.offset;
  uint8_t* keep = drop ? a.keep : nullptr;
  uint16_t* y16 = a.y16;
  uint32_t threshold = dropThreshold(p);
  float s = static_cast<float>(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t o = r * cols;
    const float* xr = x + o;
    if (drop) {
      dropoutRow(xr, keep + o, offset + static_cast<uint32_t>(o), cols, seed, threshold, s, sum + o);
      xr = sum + o;
    }
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) sum[o + j] = xr[j] + res[o + j];
    layerNormRow(sum + o, g, b, y + o, y16 ? y16 + o : nullptr, mean[r], rstd[r], cols, eps);
  }
}

void layerNormBackward(const float* dy, const float* x, const float* mean, const float* rstd, const float* g, float* dx,
                       float* dg, float* db, int64_t rows, int64_t cols) {
  int threads = omp_get_max_threads();
  // Per-thread partial sums for dgamma/dbeta, reduced at the end (deterministic for a fixed thread count).
  std::vector<double> pg((dg ? cols : 0) * threads, 0.0), pb((db ? cols : 0) * threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    double* mg = dg ? pg.data() + t * cols : nullptr;
    double* mb = db ? pb.data() + t * cols : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = x + r * cols, *dyr = dy + r * cols;
      float mu = mean[r], rs = rstd[r];
      double sumG = 0, sumGX = 0;
#pragma omp simd reduction(+ : sumG, sumGX)
      for (int64_t j = 0; j < cols; j++) {
        float xhat = (xr[j] - mu) * rs;
        float gj = dyr[j] * g[j];
        sumG += gj;
        sumGX += gj * xhat;
      }
      if (mg) {
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) mg[j] += dyr[j] * ((xr[j] - mu) * rs);
      }
      if (mb) {
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) mb[j] += dyr[j];
      }
      float mG = static_cast<float>(sumG / cols), mGX = static_cast<float>(sumGX / cols);
      float* dxr = dx + r * cols;
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) {
        float xhat = (xr[j] - mu) * rs;
        dxr[j] = rs * (dyr[j] * g[j] - mG - xhat * mGX);
      }
    }
  }
  for (int t = 0; t < threads; t++) {
    for (int64_t j = 0; j < cols; j++) {
      if (dg) dg[j] += static_cast<float>(pg[t * cols + j]);
      if (db) db[j] += static_cast<float>(pb[t * cols + j]);
    }
  }
}

}  // namespace weitiao
