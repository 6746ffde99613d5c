// Scaled dot-product attention, forward and backward: fp32 per (batch, head) through sgemm; bf16 as batched oneDNN
// matmuls, or per (batch, head) on own AVX512-BF16 tiles. Softmax statistics stay fp32 in every path.
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "kernels.h"

namespace weitiao {
namespace {

// ------------------------------------------------------------------------------------------------ bf16 attention
// In bf16 mode attention runs as one batched oneDNN matmul over all (batch, head) pairs per product, reading the
// heads in place through strides ([B·T, H·D] rows seen as [B, H, T, D]); softmax statistics stay fp32.

// The three layouts attention needs, per (batch, head), with Tq query rows and T key rows:
//   RowsByRowsT:   [Tq,D] × [T,D]ᵀ  → [Tq,T]   scores S = Q Kᵀ, and dP = dctx Vᵀ
//   SquareByRows:  [Tq,T] × [T,D]   → [Tq,D]   ctx = P V, and dQ = dS K
//   SquareTByRows: [Tq,T]ᵀ × [Tq,D] → [T,D]    dV = Pᵀ dctx, and dK = dSᵀ Q
enum class HeadOp { RowsByRowsT, SquareByRows, SquareTByRows };

// dst = a × b over [B, H]; a/b bf16, dst f32 (or bf16). [T,D] operands are read and written in place in [B·T, H·D] rows.
void headMatmul(Context& ctx, HeadOp op, int64_t B, int64_t H, int64_t Tq, int64_t T, int64_t Dh, const uint16_t* a, const uint16_t* b, void* dst,
                bool bf16Dst = false) {
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  using desc = dnnl::memory::desc;
  const int64_t W = H * Dh;
  const dims qRows{Tq * W, Dh, W, 1};       // [B,H,Tq,D] read in place from [B·Tq, W]
  const dims kRows{T * W, Dh, W, 1};        // [B,H,T,D] from [B·T, W]
  const dims kRowsT{T * W, Dh, 1, W};       // its transpose [B,H,D,T]
  const dims sq{H * Tq * T, Tq * T, T, 1};  // [B,H,Tq,T] contiguous
  const dims sqT{H * Tq * T, Tq * T, 1, T}; // its transpose [B,H,T,Tq]
  HeadKey key{static_cast<int>(op), bf16Dst, B, H, Tq, T, Dh};
  const dt cType = bf16Dst ? dt::bf16 : dt::f32;
  auto it = ctx.headMatmuls.find(key);
  if (it == ctx.headMatmuls.end()) {
    desc a_d, b_d, c_d;
    if (op == HeadOp::RowsByRowsT) {
      a_d = desc({B, H, Tq, Dh}, dt::bf16, qRows);
      b_d = desc({B, H, Dh, T}, dt::bf16, kRowsT);
      c_d = desc({B, H, Tq, T}, cType, sq);
    } else if (op == HeadOp::SquareByRows) {
      a_d = desc({B, H, Tq, T}, dt::bf16, sq);
      b_d = desc({B, H, T, Dh}, dt::bf16, kRows);
      c_d = desc({B, H, Tq, Dh}, cType, qRows);
    } else {
      a_d = desc({B, H, T, Tq}, dt::bf16, sqT);
      b_d = desc({B, H, Tq, Dh}, dt::bf16, qRows);
      c_d = desc({B, H, T, Dh}, cType, kRows);
    }
    auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_d, b_d, c_d), cpuEngine());
    it = ctx.headMatmuls.emplace(key, std::make_unique<CachedMatmul>(CachedMatmul{pd, dnnl::matmul(pd)})).first;
  }
  runMatmul(*it->second, a, b, dst);
}

// Small row-major GEMM for one attention head, single-threaded (called inside the parallel loop over heads).
inline void headGemm(bool transA, bool transB, int64_t M, int64_t Nn, int64_t K, const float* A, int64_t lda,
                     const float* Bm, int64_t ldb, float* C, int64_t ldc) {
  dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, Nn, K, 1.0f, A, lda, Bm, ldb, 0.0f, C, ldc);
}

// One row of scaled, masked softmax in place (scores → probabilities). Branch-free loops so they vectorise;
// masked keys (−∞) get exactly 0.
inline void softmaxRow(float* __restrict row, const float* __restrict mrow, int64_t T, float scale) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < T; j++) {
    float x = row[j] * scale + mrow[j];  // −∞ stays −∞ (scores are finite)
    row[j] = x;
    mx = std::max(mx, x);
  }
  if (mx == -INFINITY) {  // every key masked: uniform, as HF's finfo.min mask gives
    for (int64_t j = 0; j < T; j++) row[j] = 1.0f / T;
    return;
  }
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < T; j++) {
    float e = row[j] == -INFINITY ? 0.0f : expFast(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < T; j++) row[j] *= inv;
}

// Softmax backward of one row: d holds dP' (gradient w.r.t. the probabilities after dropout) and becomes
// dS = P ⊙ (dP − Σ_j dP·P) · scale, written to out (d itself in fp32, or the bf16 operand of the next products).
template <typename Out>
inline void softmaxBackwardRow(float* d, const float* __restrict pr, const uint8_t* kr, int64_t T,
                               float keepScale, float scale, Out* out) {
  if (kr) {
#pragma omp simd
    for (int64_t j = 0; j < T; j++) d[j] = kr[j] ? d[j] * keepScale : 0.0f;
  }
  double dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < T; j++) dot += d[j] * pr[j];
  float fdot = static_cast<float>(dot);
#pragma omp simd
  for (int64_t j = 0; j < T; j++) storeAs(out[j], pr[j] * (d[j] - fdot) * scale);
}

// ------------------------------------------------------------------------------------------------ bf16 attention per head
// With T and the head size multiples of 16, backward runs each (batch, head) pair start to finish on one thread with
// its own AVX512-BF16 products: dP' and dS (64 KB each at T = 128) stay in L2 between the products and the softmax
// backward instead of a trip through memory per batched product (BERT-base: 5.0 → 4.1 ms per layer here). Forward
// gains nothing from the same treatment at full length (≈12% slower than oneDNN's batched products) and stays batched
// except where it saves work: with per-sequence lengths (a packed batch's padding skipped), and in inference, where
// nothing is kept and each head's probabilities stay in per-thread scratch (BERT-base inference at batch 64:
// attention 0.159 → 0.133 s).
#if defined(__AVX512BF16__)
constexpr bool kHeadKernels = true;

// C[MR rows, NV·16 columns] = A · B over K (even), fp32 accumulation. B is given as row pairs:
// Bp[(p·ldb + n)·2 + e] = B[2p + e][n]. A is bf16 rows (A[m][k] = A[m·lda + k]), or with ATrans its transpose is
// stored (A[m][k] = A[k·lda + m]), so Pᵀ·X needs no transposed copy of P.
template <int MR, int NV, bool ATrans>
inline void pairTile(const uint16_t* A, int64_t lda, const uint16_t* Bp, int64_t ldb, int64_t K, float* C, int64_t ldc) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NV; j++) acc[i][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < K / 2; p++) {
    __m512bh b[NV];
    for (int j = 0; j < NV; j++) b[j] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(Bp + (p * ldb + j * 16) * 2));
    for (int i = 0; i < MR; i++) {
      uint32_t pair;
      if (ATrans) {
        pair = A[2 * p * lda + i] | static_cast<uint32_t>(A[(2 * p + 1) * lda + i]) << 16;
      } else {
        std::memcpy(&pair, A + i * lda + 2 * p, 4);
      }
      const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int32_t>(pair)));
      for (int j = 0; j < NV; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, b[j]);
    }
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NV; j++) _mm512_storeu_ps(C + i * ldc + j * 16, acc[i][j]);
}

template <int MR, bool ATrans>
inline void pairBlock(int nv, const uint16_t* A, int64_t lda, const uint16_t* Bp, int64_t ldb, int64_t K, float* C, int64_t ldc) {
  switch (nv) {
    case 4: pairTile<MR, 4, ATrans>(A, lda, Bp, ldb, K, C, ldc); break;
    case 3: pairTile<MR, 3, ATrans>(A, lda, Bp, ldb, K, C, ldc); break;
    case 2: pairTile<MR, 2, ATrans>(A, lda, Bp, ldb, K, C, ldc); break;
    default: pairTile<MR, 1, ATrans>(A, lda, Bp, ldb, K, C, ldc); break;
  }
}

// C[M,N] = A[M,K] · B, single-threaded; N % 16 == 0, K even, B as row pairs (see pairTile).
template <bool ATrans>
void gemmPairs(int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* Bp, float* C, int64_t ldc) {
  const int64_t rowStep = ATrans ? 1 : lda;  // from row m of A to row m + 1
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const int nv = static_cast<int>(std::min<int64_t>(4, (N - n0) / 16));
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) pairBlock<4, ATrans>(nv, A + m * rowStep, lda, Bp + n0 * 2, N, K, C + m * ldc + n0, ldc);
    for (; m < M; m++) pairBlock<1, ATrans>(nv, A + m * rowStep, lda, Bp + n0 * 2, N, K, C + m * ldc + n0, ldc);
  }
}

// The row pairs of a bf16 matrix src[K,N] (row stride ld): dst[(p·N + n)·2 + e] = src[(2p + e)·ld + n].
void pairRows(const uint16_t* src, int64_t ld, int64_t K, int64_t N, uint16_t* dst) {
  for (int64_t p = 0; p < K / 2; p++)
    for (int64_t n = 0; n < N; n += 16) {
      const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * p * ld + n));
      const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + (2 * p + 1) * ld + n));
      const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
      _mm512_storeu_si512(dst + (p * N + n) * 2, interleaveRowPair(both));
    }
}

// 16×16 transpose of 32-bit words: dst[c·ldd + r] = src[r·lds + c].
inline void transposeWords16(const uint32_t* src, int64_t lds, uint32_t* dst, int64_t ldd) {
  __m512i r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(src + i * lds);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int j = 0; j < 4; j++) {  // then whole 128-bit lanes
    t[j] = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);
    t[4 + j] = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xdd);
    t[8 + j] = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xdd);
  }
  for (int j = 0; j < 4; j++) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd);
    r[4 + j] = _mm512_shuffle_i32x4(t[4 + j], t[12 + j], 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(t[4 + j], t[12 + j], 0xdd);
  }
  for (int i = 0; i < 16; i++) _mm512_storeu_si512(dst + i * ldd, r[i]);
}

// Bᵀ as row pairs for a bf16 matrix src[N,K] (row stride ld, even; N % 16 == 0): the pair (src[n][2p], src[n][2p+1])
// is one 32-bit word, so this is a transpose of words: dst word p·N + n = src word n·ld/2 + p.
void pairColumns(const uint16_t* src, int64_t ld, int64_t N, int64_t K, uint16_t* dst) {
  const uint32_t* s = reinterpret_cast<const uint32_t*>(src);
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  const int64_t P = K / 2, full = P / 16 * 16;
  for (int64_t n = 0; n < N; n += 16) {
    for (int64_t p = 0; p < full; p += 16) transposeWords16(s + n * (ld / 2) + p, ld / 2, d + p * N + n, N);
    for (int64_t i = n; i < n + 16; i++)
      for (int64_t p = full; p < P; p++) std::memcpy(dst + (p * N + i) * 2, src + i * ld + 2 * p, 4);
  }
}

// Forward for one (batch, head) pair over its first n query and key rows (n % 16 == 0; the keys beyond its own are
// masked): pointers are at the head's first element; q/k/v rows have stride ldx, ctx rows stride W, probs/keep/pDropped
// rows stride ld. ctx is stored for the first `rows` rows (a packed batch's next sequence follows them), in fp32, or in
// bf16 to ctx16 when given. Dropout draws at counter + i·ld + j, as the batched path. Scratch: n·Dh bf16 pairs and
// n·Dh fp32.
void attentionHeadForward(int64_t n, int64_t rows, int64_t ld, int64_t Dh, int64_t W, int64_t ldx, const uint16_t* q, const uint16_t* k,
                          const uint16_t* v, const float* mrow, float scale, float* probs, uint16_t* pDropped, uint8_t* keep,
                          bool dropout, uint32_t counter, uint32_t seed, uint32_t threshold, float keepScale, float* ctx,
                          uint16_t* ctx16, uint16_t* pairs, float* c32) {
  pairColumns(k, ldx, n, Dh, pairs);
  gemmPairs<false>(n, n, Dh, q, ldx, pairs, probs, ld);  // S = Q Kᵀ
  for (int64_t i = 0; i < n; i++) {
    float* row = probs + i * ld;
    softmaxRow(row, mrow, n, scale);
    if (dropout) {
      dropoutRow(row, keep + i * ld, counter + static_cast<uint32_t>(i * ld), n, seed, threshold, keepScale, pDropped + i * ld);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < n; j++) pDropped[i * ld + j] = toBf16(row[j]);
    }
  }
  pairRows(v, ldx, n, Dh, pairs);
  gemmPairs<false>(n, Dh, n, pDropped, ld, pairs, c32, Dh);  // ctx = P' V
  for (int64_t i = 0; i < rows; i++) {
    if (ctx16) {
#pragma omp simd
      for (int64_t d = 0; d < Dh; d++) ctx16[i * W + d] = toBf16(c32[i * Dh + d]);
    } else {
      std::memcpy(ctx + i * W, c32 + i * Dh, sizeof(float) * Dh);
    }
  }
}

// Backward for one (batch, head) pair over its first n query and key rows (n % 16 == 0; the keys beyond its own are
// masked); pointers are at the head's first element. q/k/v rows have stride ldx; dctx/dq/dk/dv rows stride W; probs,
// pDropped and keep rows stride ld. dctx is read for the first `rows` rows (zero after: a packed batch's next sequence
// follows them); with `stage`, dq/dk/dv are made in o32 ([3, n, Dh]) and stored for those rows alone, else all n rows
// go straight to them. Scratch: 2·n·Dh + n·n bf16 and n·n fp32.
void attentionHeadBackward(int64_t n, int64_t rows, int64_t ld, int64_t Dh, int64_t W, int64_t ldx, const uint16_t* q, const uint16_t* k,
                           const uint16_t* v, const float* probs, const uint16_t* pDropped, const uint8_t* keep, const float* dctx,
                           const uint16_t* dctx16, float keepScale, float scale, float* dq, float* dk, float* dv, bool stage,
                           uint16_t* s16, float* s32, float* o32) {
  uint16_t* pairs = s16 + n * Dh;  // the B operand of the product at hand
  uint16_t* ds = pairs + n * Dh;   // dS in bf16, [n, n]
  // dctx in bf16: the caller's copy (rows of stride W), or made here in s16 ([n, Dh])
  const uint16_t* d16 = dctx16;
  int64_t ldd = W;
  if (!d16 || rows < n) {
    // (not convertBf16To: this runs inside the per-head parallel loop, and opening its region per head costs ≈10%)
    for (int64_t i = 0; i < n; i++) {
      if (i >= rows) {
        std::fill(s16 + i * Dh, s16 + (i + 1) * Dh, uint16_t{0});
      } else if (dctx16) {
        std::memcpy(s16 + i * Dh, dctx16 + i * W, sizeof(uint16_t) * Dh);
      } else {
#pragma omp simd
        for (int64_t d = 0; d < Dh; d++) s16[i * Dh + d] = toBf16(dctx[i * W + d]);
      }
    }
    d16 = s16;
    ldd = Dh;
  }
  float *oq = stage ? o32 : dq, *ok = stage ? o32 + n * Dh : dk, *ov = stage ? o32 + 2 * n * Dh : dv;
  const int64_t ldo = stage ? Dh : W;
  pairRows(d16, ldd, n, Dh, pairs);
  gemmPairs<true>(n, Dh, n, pDropped, ld, pairs, ov, ldo);  // dV = P'ᵀ dctx
  pairColumns(v, ldx, n, Dh, pairs);
  gemmPairs<false>(n, n, Dh, d16, ldd, pairs, s32, n);  // dP' = dctx Vᵀ
  for (int64_t i = 0; i < n; i++)
    softmaxBackwardRow(s32 + i * n, probs + i * ld, keep ? keep + i * ld : nullptr, n, keepScale, scale, ds + i * n);
  pairRows(k, ldx, n, Dh, pairs);
  gemmPairs<false>(n, Dh, n, ds, n, pairs, oq, ldo);  // dQ = dS K
  pairRows(q, ldx, n, Dh, pairs);
  gemmPairs<true>(n, Dh, n, ds, n, pairs, ok, ldo);  // dK = dSᵀ Q
  if (stage) {
    for (int64_t i = 0; i < rows; i++) {
      std::memcpy(dq + i * W, oq + i * Dh, sizeof(float) * Dh);
      std::memcpy(dk + i * W, ok + i * Dh, sizeof(float) * Dh);
      std::memcpy(dv + i * W, ov + i * Dh, sizeof(float) * Dh);
    }
  }
}

#else
constexpr bool kHeadKernels = false;
void attentionHeadForward(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const uint16_t*, const uint16_t*, const uint16_t*,
                          const float*, float, float*, uint16_t*, uint8_t*, bool, uint32_t, uint32_t, uint32_t, float, float*,
                          uint16_t*, uint16_t*, float*) {}
void attentionHeadBackward(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const uint16_t*, const uint16_t*, const uint16_t*,
                           const float*, const uint16_t*, const uint8_t*, const float*, const uint16_t*, float, float, float*, float*,
                           float*, bool, uint16_t*, float*, float*) {}
#endif

// Where each sequence's rows are for attention: AttentionShape.lengths and .starts (packed rows come with lengths and
// every query row) and the rows of k and v in all (of q too unless Tq = 1).
struct SequenceRows {
  const int32_t *lengths, *starts;
  int64_t total;
  // Rows sequence b's attention computes: its length, or T without lengths; the per-head bf16 kernels round it up to
  // their tile of 16 (kAttentionTile; the keys in between are masked).
  int64_t attended(int64_t b, int64_t T) const { return lengths ? lengths[b] : T; }
  int64_t tiled(int64_t b, int64_t T) const {
    return std::min(T, (attended(b, T) + kAttentionTile - 1) / kAttentionTile * kAttentionTile);
  }
  int64_t first(int64_t b, int64_t T) const { return starts ? starts[b] : b * T; }
};
SequenceRows sequenceRows(const int32_t* lengths, const int32_t* starts, int64_t Bn, int64_t T, int64_t Tq) {
  if (starts && (!lengths || Tq != T)) throw KernelError("attention: packed rows (starts) need lengths and every query row");
  return {lengths, starts, starts ? starts[Bn - 1] + lengths[Bn - 1] : Bn * T};
}

// q, k, v of one (sequence, head) for the per-head kernels: in place (stride W), or, where the sequence's n rows run
// past the end of a packed batch (`available` rows left), copied into `tail` ([3, n, Dh], zeros after) so that the
// kernels read only finite values (masked keys still multiply: a NaN there would spread).
struct HeadInputs {
  const uint16_t *q, *k, *v;
  int64_t ld;
};
inline HeadInputs headInputs(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t available, int64_t Dh,
                             int64_t W, uint16_t* tail) {
  if (available >= n) return {q, k, v, W};
  const uint16_t* src[3] = {q, k, v};
  for (int m = 0; m < 3; m++) {
    uint16_t* t = tail + m * n * Dh;
    std::fill(t, t + n * Dh, uint16_t{0});
    for (int64_t i = 0; i < available; i++) std::memcpy(t + i * Dh, src[m] + i * W, sizeof(uint16_t) * Dh);
  }
  return {tail, tail + n * Dh, tail + 2 * n * Dh, Dh};
}

// The per-head backward needs every query row (Tq = T) and tiles of 16 along T and the head size.
inline bool useHeadKernels(int64_t T, int64_t Tq, int64_t Dh) {
  return kHeadKernels && Tq == T && T % kAttentionTile == 0 && Dh % 16 == 0;
}

}  // namespace

// q/ctx: [B·Tq, W]; k/v: [B·T, W]; probs/keep: [B, H, Tq, T]. Tq is T, or 1 for [CLS]-only. In bf16 mode: the bf16
// copies of q, k, v with their filled flags (or null); pKept, the bf16 copy of the dropped probabilities P' (forward
// fills it; backward reads it instead of rebuilding P' when filled); ctx16, ctx's bf16 copy (or null), written
// instead of ctx.
void attentionForward(Context& cx, const AttentionForwardArgs& a) {
  const float *q = a.q, *k = a.k, *v = a.v, *mask = a.mask;
  int64_t Bn = a.batch, T = a.T, H = a.heads, Dh = a.headDim;
  float *probs = a.probs, *ctx = a.ctx;  // probs null: nothing is kept for backward
  bool dropout = a.dropout;
  double p = dropout ? a.p : 0;
  uint32_t seed = dropout ? a.seed : 0, offset = dropout ? a.offset : 0;
  uint8_t* keep = a.keep;
  int64_t Tq = a.Tq;
  int64_t W = H * Dh;
  float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  uint32_t threshold = dropThreshold(p);
  float keepScale = dropout ? static_cast<float>(1.0 / (1.0 - p)) : 1.0f;
  const SequenceRows seq = sequenceRows(a.lengths, a.starts, Bn, T, Tq);
  const int64_t np = Bn * H * Tq * T;
  uint16_t* pKept = a.pKept;  // P' in bf16 for backward to keep, or null
  if (cx.bf16 && useHeadKernels(T, Tq, Dh) && (seq.lengths || !probs)) {
    // Per (sequence, head): over its rows rounded up to 16 (the kernels' tile) when lengths are given, and with nothing
    // kept (inference) its probabilities stay in per-thread scratch instead of going through memory.
    const uint16_t* q16 = bf16Input(q, seq.total, W, a.q16, cx.q16);
    const uint16_t* k16 = bf16Input(k, seq.total, W, a.k16, cx.k16);
    const uint16_t* v16 = bf16Input(v, seq.total, W, a.v16, cx.v16);
    uint16_t* ctx16 = a.ctx16;
#pragma omp parallel
    {
      std::vector<uint16_t> pairs(static_cast<size_t>(T * Dh)), tail(static_cast<size_t>(seq.starts ? 3 * T * Dh : 0));
      std::vector<float> c32(static_cast<size_t>(T * Dh));
      // one head's [T, T] blocks of what is not kept (rows of T, as in the full arrays, so dropout draws alike)
      std::vector<float> sp(probs ? 0 : static_cast<size_t>(T * T));
      std::vector<uint16_t> sp16(pKept ? 0 : static_cast<size_t>(T * T));
      std::vector<uint8_t> sk(keep || !dropout ? 0 : static_cast<size_t>(T * T));
#pragma omp for schedule(dynamic)
      for (int64_t bh = 0; bh < Bn * H; bh++) {
        const int64_t b = bh / H, n = seq.tiled(b, T), first = seq.first(b, T);
        const int64_t at = first * W + (bh % H) * Dh, sq = bh * T * T;
        const HeadInputs in = headInputs(q16 + at, k16 + at, v16 + at, n, seq.total - first, Dh, W, tail.data());
        attentionHeadForward(n, seq.starts ? seq.attended(b, T) : n, T, Dh, W, in.ld, in.q, in.k, in.v, mask + b * T, scale,
                             probs ? probs + sq : sp.data(), pKept ? pKept + sq : sp16.data(), keep ? keep + sq : sk.data(), dropout,
                             offset + static_cast<uint32_t>(sq), seed, threshold, keepScale, ctx + at, ctx16 ? ctx16 + at : nullptr,
                             pairs.data(), c32.data());
      }
    }
    return;
  }
  if (!probs) {  // the layouts below go through memory: scratch for what is not kept
    cx.probs.resize(static_cast<size_t>(np));
    probs = cx.probs.data();
  }
  if (dropout && !keep) {
    cx.keep.resize(static_cast<size_t>(np));
    keep = cx.keep.data();
  }
  if (cx.bf16) {
    if (seq.starts) throw KernelError("attentionForward: packed rows need the per-head kernels (see packedAttention)");
    const uint16_t* q16 = bf16Input(q, Bn * Tq, W, a.q16, cx.q16);
    const uint16_t* k16 = bf16Input(k, Bn * T, W, a.k16, cx.k16);
    const uint16_t* v16 = bf16Input(v, Bn * T, W, a.v16, cx.v16);
    uint16_t* p16 = pKept;
    if (!p16) {
      cx.p16.resize(static_cast<size_t>(np));
      p16 = cx.p16.data();
    }
    uint16_t* ctx16 = a.ctx16;  // ctx's bf16 copy: the product goes there instead of ctx
    headMatmul(cx, HeadOp::RowsByRowsT, Bn, H, Tq, T, Dh, q16, k16, probs);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < Bn * H * Tq; r++) {
      float* row = probs + r * T;
      const float* mrow = mask + (r / (H * Tq)) * T;
      softmaxRow(row, mrow, T, scale);
      uint16_t* out = p16 + r * T;
      if (dropout) {
        dropoutRow(row, keep + r * T, offset + static_cast<uint32_t>(r * T), T, seed, threshold, keepScale, out);
      } else {
#pragma omp simd
        for (int64_t j = 0; j < T; j++) out[j] = toBf16(row[j]);
      }
    }
    headMatmul(cx, HeadOp::SquareByRows, Bn, H, Tq, T, Dh, p16, v16, ctx16 ? static_cast<void*>(ctx16) : ctx, ctx16 != nullptr);
    return;
  }
#pragma omp parallel
  {
    std::vector<float> s(Tq * T);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < Bn; b++) {
      for (int64_t h = 0; h < H; h++) {
        const int64_t kvBase = seq.first(b, T) * W + h * Dh, qBase = seq.starts ? kvBase : b * Tq * W + h * Dh;
        int64_t pOff = (b * H + h) * Tq * T;
        const int64_t n = seq.attended(b, T), nq = Tq == T ? n : Tq;  // keys and query rows computed
        float* P = probs + pOff;
        headGemm(false, true, nq, n, Dh, q + qBase, W, k + kvBase, W, P, T);
        const float* mrow = mask + b * T;
        for (int64_t i = 0; i < nq; i++) softmaxRow(P + i * T, mrow, n, scale);
        const float* Pu = P;
        if (dropout) {
          for (int64_t i = 0; i < nq; i++) {
            const int64_t o = pOff + i * T;
            dropoutRow(P + i * T, keep + o, offset + static_cast<uint32_t>(o), n, seed, threshold, keepScale, s.data() + i * T);
          }
          Pu = s.data();
        }
        headGemm(false, false, nq, Dh, n, Pu, T, v + kvBase, W, ctx + qBase, W);
      }
    }
  }
}

// Shapes and bf16 copies as in attentionForward; dctx16: dctx's bf16 copy (read instead of dctx when filled).
void attentionBackward(Context& cx, const AttentionBackwardArgs& a) {
  const float *q = a.q, *k = a.k, *v = a.v, *probs = a.probs;
  const uint8_t* keep = a.keep;
  double p = a.p;
  const float* dctx = a.dctx;
  int64_t Bn = a.batch, T = a.T, H = a.heads, Dh = a.headDim;
  float *dq = a.dq, *dk = a.dk, *dv = a.dv;
  int64_t Tq = a.Tq;
  const SequenceRows seq = sequenceRows(a.lengths, a.starts, Bn, T, Tq);
  int64_t W = H * Dh;
  float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  float keepScale = keep ? static_cast<float>(1.0 / (1.0 - p)) : 1.0f;
  if (cx.bf16) {
    const int64_t np = Bn * H * Tq * T;
    const uint16_t* q16 = bf16Input(q, seq.starts ? seq.total : Bn * Tq, W, a.q16, cx.q16);
    const uint16_t* k16 = bf16Input(k, seq.total, W, a.k16, cx.k16);
    const uint16_t* v16 = bf16Input(v, seq.total, W, a.v16, cx.v16);
    const CopyArg kept = a.pKept, dctxCopy = a.dctx16;
    const uint16_t* dctx16 = dctxCopy.ready ? dctxCopy.data : nullptr;
    const uint16_t* pDropped = kept.data;
    if (!kept.data || !kept.ready) {  // rebuild P' (the batched path below then reuses cx.p16 for dS)
      cx.p16.resize(static_cast<size_t>(np));
#pragma omp parallel for simd schedule(static)
      for (int64_t t = 0; t < np; t++) cx.p16[t] = toBf16(keep ? (keep[t] ? probs[t] * keepScale : 0.0f) : probs[t]);
      pDropped = cx.p16.data();
    }
    if (useHeadKernels(T, Tq, Dh)) {
#pragma omp parallel
      {
        std::vector<uint16_t> s16(static_cast<size_t>(2 * T * Dh + T * T)), tail(static_cast<size_t>(seq.starts ? 3 * T * Dh : 0));
        std::vector<float> s32(static_cast<size_t>(T * T)), o32(static_cast<size_t>(seq.starts ? 3 * T * Dh : 0));
#pragma omp for schedule(dynamic)
        for (int64_t bh = 0; bh < Bn * H; bh++) {
          const int64_t b = bh / H, n = seq.tiled(b, T), first = seq.first(b, T);  // as forward
          const int64_t at = first * W + (bh % H) * Dh, sq = bh * T * T;
          const HeadInputs in = headInputs(q16 + at, k16 + at, v16 + at, n, seq.total - first, Dh, W, tail.data());
          attentionHeadBackward(n, seq.attended(b, T), T, Dh, W, in.ld, in.q, in.k, in.v, probs + sq, pDropped + sq,
                                keep ? keep + sq : nullptr, dctx ? dctx + at : nullptr, dctx16 ? dctx16 + at : nullptr, keepScale, scale,
                                dq + at, dk + at, dv + at, seq.starts != nullptr, s16.data(), s32.data(), o32.data());
        }
      }
      return;
    }
    if (seq.starts) throw KernelError("attentionBackward: packed rows need the per-head kernels (see packedAttention)");
    if (!dctx16) {
      convertBf16(dctx, Bn * Tq, W, W, cx.d16);
      dctx16 = cx.d16.data();
    }
    headMatmul(cx, HeadOp::SquareTByRows, Bn, H, Tq, T, Dh, pDropped, dctx16, dv);  // dV = P'ᵀ dctx
    cx.dp.resize(static_cast<size_t>(np));
    cx.p16.resize(static_cast<size_t>(np));  // dS in bf16; overwrites a rebuilt P' only after dV has read it
    headMatmul(cx, HeadOp::RowsByRowsT, Bn, H, Tq, T, Dh, dctx16, v16, cx.dp.data());  // dP' = dctx Vᵀ
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < Bn * H * Tq; r++) {
      // cx.p16 is reused: now dS in bf16
      softmaxBackwardRow(cx.dp.data() + r * T, probs + r * T, keep ? keep + r * T : nullptr, T, keepScale, scale,
                         cx.p16.data() + r * T);
    }
    headMatmul(cx, HeadOp::SquareByRows, Bn, H, Tq, T, Dh, cx.p16.data(), k16, dq);   // dQ = dS K
    headMatmul(cx, HeadOp::SquareTByRows, Bn, H, Tq, T, Dh, cx.p16.data(), q16, dk);  // dK = dSᵀ Q
    return;
  }
#pragma omp parallel
  {
    std::vector<float> pd(Tq * T), dp(Tq * T);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < Bn; b++) {
      for (int64_t h = 0; h < H; h++) {
        const int64_t kvBase = seq.first(b, T) * W + h * Dh, qBase = seq.starts ? kvBase : b * Tq * W + h * Dh;
        int64_t pOff = (b * H + h) * Tq * T;
        const int64_t n = seq.attended(b, T), nq = Tq == T ? n : Tq;  // as forward
        const float* P = probs + pOff;
        const float* Pu = P;
        if (keep) {
          for (int64_t i = 0; i < nq; i++)
            for (int64_t j = 0; j < n; j++) pd[i * T + j] = keep[pOff + i * T + j] ? P[i * T + j] * keepScale : 0.0f;
          Pu = pd.data();
        }
        headGemm(true, false, n, Dh, nq, Pu, T, dctx + qBase, W, dv + kvBase, W);  // dV = P'ᵀ dctx
        headGemm(false, true, nq, n, Dh, dctx + qBase, W, v + kvBase, W, dp.data(), T);  // dP' = dctx Vᵀ
        for (int64_t i = 0; i < nq; i++) {
          float* d = dp.data() + i * T;
          softmaxBackwardRow(d, P + i * T, keep ? keep + pOff + i * T : nullptr, n, keepScale, scale, d);
        }
        headGemm(false, false, nq, Dh, n, dp.data(), T, k + kvBase, W, dq + qBase, W);  // dQ = dS K
        headGemm(true, false, n, Dh, nq, dp.data(), T, q + qBase, W, dk + kvBase, W);  // dK = dSᵀ Q
      }
    }
  }
}

bool packedAttention(bool bf16, int64_t T, int64_t Tq, int64_t headDim) {
  return bf16 ? useHeadKernels(T, Tq, headDim) : Tq == T;
}

}  // namespace weitiao
