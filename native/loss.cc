// Softmax cross-entropy against integer labels (negative: ignored), forward and backward.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace weitiao {

double crossEntropyForward(const float* logits, const int32_t* labels, float* probs, int64_t rows, int64_t C) {
  double loss = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float* l = logits + r * C;
    double mx = -INFINITY;
    for (int64_t c = 0; c < C; c++) mx = std::max(mx, static_cast<double>(l[c]));
    double sum = 0;
    for (int64_t c = 0; c < C; c++) sum += std::exp(l[c] - mx);
    double logSum = std::log(sum) + mx;
    for (int64_t c = 0; c < C; c++) probs[r * C + c] = static_cast<float>(std::exp(l[c] - logSum));
    if (labels[r] >= 0) loss += logSum - l[labels[r]];
  }
  return loss;
}

void crossEntropyBackward(const float* probs, const int32_t* labels, float* d, int64_t rows, int64_t C, double scale) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < C; c++)
      d[r * C + c] = labels[r] < 0 ? 0.0f : static_cast<float>((probs[r * C + c] - (c == labels[r] ? 1.0 : 0.0)) * scale);
}

}  // namespace weitiao
