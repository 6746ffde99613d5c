// weitiao native backend: the kernels of src/backend/types.ts in C++, on plain pointers and sizes.
// GEMMs go to oneDNN (fp32 sgemm; bf16 matmul primitives with fp32 accumulation, cached per shape), except the small
// per-head products of bf16 attention backward (own AVX512-BF16 tiles);
// everything else is fused, vectorisable loops parallelised with OpenMP (the runtime oneDNN uses here too).
// binding.cc hands them the JS typed arrays themselves (no copies cross the boundary); native/test/kernels_test.cc
// calls them on plain arrays. One file per kernel family: gemm.cc, activations.cc, layernorm.cc, attention.cc,
// embedding.cc, loss.cc, optimizer.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.h"
#include "context.h"

namespace weitiao {

// A kernel's refusal of its arguments (a read or write they would take out of bounds, or a combination no path
// takes), thrown before anything is written. The binding turns it into a JS Error, or a RangeError when `range`.
struct KernelError : std::runtime_error {
  bool range;
  explicit KernelError(const std::string& what, bool isRange = false) : std::runtime_error(what), range(isRange) {}
};

// A typed array's data and its length in elements (the kernels that check indices against a table take these).
template <typename T>
struct Span {
  T* data;
  size_t length;
};

// ------------------------------------------------------------------------------------------------ GEMM (gemm.cc)

// Whether oneDNN has bf16 GEMMs on this CPU: v2.6 has none without AVX-512, and creating one there throws from
// deep inside a kernel call. Asked once, by building a tiny bf16 matmul.
bool bf16Supported();

// y = x Wᵀ + b. xCopy: x's bf16 copy (or null) and whether it is filled. y16: y's bf16 copy (or null): in bf16 mode
// the product is stored there instead of y (y's only readers want bf16).
void linearForward(Context& ctx, const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t in,
                   int64_t out, CopyArg xCopy, uint16_t* y16);

struct LinearBackwardArgs {
  const float* dy = nullptr;
  const float* x = nullptr;
  const float* w = nullptr;
  float* dx = nullptr;  // dx, dw, db: each may be null
  float* dw = nullptr;
  float* db = nullptr;
  int64_t rows = 0, in = 0, out = 0;
  // dW = dyᵀ x and db = Σ dy instead of adding to them (their contents are stale: no gradient since zeroGrad).
  bool overwrite = false;
  CopyArg xCopy{nullptr, false};  // x's bf16 copy and whether it is filled
  const float* geluX = nullptr;   // GELU's input when dy is the gradient at GELU's output (see biasGrad)
  bool accumulateDx = false;      // dx += dy W
  // dx's bf16 copy (or null; bf16 mode, not with accumulateDx): dx = dy W is stored there instead of dx (dx's only
  // reader wants bf16).
  uint16_t* dx16 = nullptr;
  // bf16 mode: dy and GELU's input given as bf16 copies only (filled), read instead of dy and geluX.
  const uint16_t* dyIn16 = nullptr;
  const uint16_t* geluX16 = nullptr;
};
// dx = dy W ; dW += dyᵀ x ; db += Σ dy, with the variants of LinearBackwardArgs.
void linearBackward(Context& ctx, const LinearBackwardArgs& a);

// ------------------------------------------------------------------------------------------------ activations (activations.cc)

void add(const float* a, const float* b, float* o, int64_t n);
// y = gelu(x); with y16 (y's bf16 copy) only the copy is written: y's sole reader is the next GEMM, and skipping the
// fp32 write and a conversion pass saves ≈50 MB of traffic per BERT-base layer. With x16 (x's bf16 copy, filled) x is
// read from it instead (x, y may then be null where unused).
void geluForward(const float* x, float* y, int64_t n, uint16_t* y16, const uint16_t* x16);
// dx = dy · gelu'(x)
void geluBackward(const float* x, const float* dy, float* dx, int64_t n);
void tanhForward(const float* x, float* y, int64_t n);
void tanhBackward(const float* y, const float* dy, float* dx, int64_t n);
// gelu_new (ALBERT: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in float as torch computes it), or relu.
void activationForward(bool relu, const float* x, float* y, int64_t n);
// dx = dy·act'(x)
void activationBackward(bool relu, const float* x, const float* dy, float* dx, int64_t n);
void dropoutForward(const float* x, float* y, uint8_t* keep, int64_t n, double p, uint32_t seed, uint32_t offset);
void dropoutBackward(const float* dy, float* dx, const uint8_t* keep, int64_t n, double p);

// ------------------------------------------------------------------------------------------------ LayerNorm (layernorm.cc)

void layerNormForward(const float* x, const float* g, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                      int64_t cols, double eps);

struct DropoutAddLayerNormArgs {
  const float* x = nullptr;
  const float* residual = nullptr;
  const float* gamma = nullptr;
  const float* beta = nullptr;
  float* sum = nullptr;
  float* y = nullptr;
  float* mean = nullptr;
  float* rstd = nullptr;
  int64_t rows = 0, cols = 0;
  double eps = 0;
  bool dropout = false;  // false: no dropout (p, seed, offset, keep unused)
  double p = 0;
  uint32_t seed = 0, offset = 0;
  uint8_t* keep = nullptr;
  uint16_t* y16 = nullptr;  // y's bf16 copy (or null)
};
// sum = dropout(x) + residual; y = LayerNorm(sum): dropoutForward, add and layerNormForward fused row by row.
void dropoutAddLayerNorm(const DropoutAddLayerNormArgs& a);

// dx overwritten; dg, db (each may be null) accumulated.
void layerNormBackward(const float* dy, const float* x, const float* mean, const float* rstd, const float* g, float* dx,
                       float* dg, float* db, int64_t rows, int64_t cols);

// ------------------------------------------------------------------------------------------------ attention (attention.cc)

// The per-head bf16 kernels' tile along the sequence: with lengths, each sequence's rows are rounded up to a multiple
// of it (the keys in between masked), and packed rows need a padded length that is one.
constexpr int64_t kAttentionTile = 16;

// q/ctx: [B·Tq, W]; k/v: [B·T, W]; probs/keep: [B, H, Tq, T], W = heads·headDim. Tq is T, or 1 for [CLS]-only.
struct AttentionForwardArgs {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* mask = nullptr;  // [B·T] additive key mask
  int64_t batch = 0, T = 0, heads = 0, headDim = 0, Tq = 0;
  float* probs = nullptr;  // null: nothing is kept for backward
  float* ctx = nullptr;
  bool dropout = false;
  double p = 0;
  uint32_t seed = 0, offset = 0;
  uint8_t* keep = nullptr;  // null: the mask is not kept
  // bf16 copies of q, k, v with their filled flags (or null), used in bf16 mode
  CopyArg q16{nullptr, false}, k16{nullptr, false}, v16{nullptr, false};
  uint16_t* pKept = nullptr;  // the bf16 copy of the dropped probabilities P' to fill (or null)
  uint16_t* ctx16 = nullptr;  // ctx's bf16 copy (or null), written instead of ctx
  // AttentionShape.lengths and .starts (or null; packed rows come with lengths and every query row)
  const int32_t* lengths = nullptr;
  const int32_t* starts = nullptr;
};
void attentionForward(Context& ctx, const AttentionForwardArgs& a);

struct AttentionBackwardArgs {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* probs = nullptr;
  const uint8_t* keep = nullptr;  // null: no dropout
  double p = 0;
  const float* dctx = nullptr;
  int64_t batch = 0, T = 0, heads = 0, headDim = 0, Tq = 0;
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
  CopyArg q16{nullptr, false}, k16{nullptr, false}, v16{nullptr, false};
  CopyArg pKept{nullptr, false};  // P' in bf16: read instead of rebuilding it when filled
  CopyArg dctx16{nullptr, false};  // dctx's bf16 copy: read instead of dctx when filled
  const int32_t* lengths = nullptr;
  const int32_t* starts = nullptr;
};
void attentionBackward(Context& ctx, const AttentionBackwardArgs& a);

// Whether attention takes packed rows (AttentionShape.starts) at this shape.
bool packedAttention(bool bf16, int64_t T, int64_t Tq, int64_t headDim);

// ------------------------------------------------------------------------------------------------ embedding (embedding.cc)

// out[r] = word[ids[r]] + pe[pos[r]] + te[type[r]]: every id checked against its table first (KernelError, range).
void embeddingForward(Span<const int32_t> ids, Span<const int32_t> pos, Span<const int32_t> type, Span<const float> word,
                      Span<const float> pe, Span<const float> te, Span<float> out, int64_t rows, int64_t H);
// table[ids[r]] += dOut[r] for every id but skip, checked as above.
void embeddingBackward(Span<const int32_t> ids, Span<const float> dOut, Span<float> table, int64_t rows, int64_t H,
                       int64_t skip);

// ------------------------------------------------------------------------------------------------ loss (loss.cc)

// Softmax cross-entropy per row; writes probabilities, returns the summed loss (rows labelled < 0 add nothing).
double crossEntropyForward(const float* logits, const int32_t* labels, float* probs, int64_t rows, int64_t C);
// d = (probs − onehot(label)) · scale, 0 for rows labelled < 0.
void crossEntropyBackward(const float* probs, const int32_t* labels, float* d, int64_t rows, int64_t C, double scale);

// ------------------------------------------------------------------------------------------------ optimizer (optimizer.cc)

struct AdamWHyper {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weightDecay = 0;
  double step = 0;       // this parameter's update count, from 1
  double gradScale = 1;  // clipping's coefficient, as scale would apply it
};
// torch.optim.AdamW on a flat slice of n values.
void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWHyper& h);
// Σ x² in double.
double sumSquares(const float* x, int64_t n);
// x ← x · s
void scale(float* x, int64_t n, double s);

}  // namespace weitiao
