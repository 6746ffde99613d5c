// GEMMs and linear layers: fp32 through oneDNN's sgemm, bf16 through cached matmul primitives on a packed weight;
// weight and bias gradients.
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kernels.h"

namespace weitiao {
namespace {

// ------------------------------------------------------------------------------------------------ bf16 linear
// A linear layer's weight is the GEMM operand oneDNN wants in its own blocked layout: one reorder per call converts
// the fp32 master weight to bf16 and packs it (no more work than a plain conversion), and the packed product runs
// ≈10–20% faster than one reading a plain bf16 matrix. Forward y = x Wᵀ + b reads W as [in,out] (with the bias
// fused into the product); backward dx = dy W reads it as [out,in].

// oneDNN's bf16 kernels (avx512_core_bf16) want B [K,N] in BA16a64b2a: 64-column by 32-row blocks, column blocks
// outermost, and in each block pairs of rows interleaved (the vdpbf16ps operand). With K a multiple of 32 (else
// oneDNN pads K to one, and the packers below do not apply):
//   (k, n) → ((n/64)·(K/16) + k/16)·1024 + ((k%16)/2)·128 + (n%64)·2 + k%2.
// Its generic reorder runs at 12–18 GB/s here; these two loops convert and pack the same bytes (tested against the
// bf16-rounded product) with contiguous loads. Forward B = Wᵀ: B[k][n] = W[n·K + k]; backward B = W: W[k·N + n].
#if defined(__AVX512BF16__)
constexpr bool kOwnPacker = true;

void packWeightTransposed(const float* W, int64_t K, int64_t N, uint16_t* dst) {
  const int64_t KB = K / 16;
  // Eight W rows (eight n) at a time: 16 floats of each → 8 bf16 pairs, transposed 8×8 so each store writes one
  // pair index for the eight n.
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < N / 8; g++) {
    const int64_t nb = g / 8, n0 = (g % 8) * 8;
    for (int64_t kb = 0; kb < KB; kb++) {
      __m256i r[8];
      for (int i = 0; i < 8; i++)
        r[i] = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(W + (nb * 64 + n0 + i) * K + kb * 16)));
      __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
      __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
      __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
      __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
      __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
      __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
      __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
      __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
      const __m256i pairs[8] = {
          _mm256_permute2x128_si256(u0, u4, 0x20), _mm256_permute2x128_si256(u1, u5, 0x20),
          _mm256_permute2x128_si256(u2, u6, 0x20), _mm256_permute2x128_si256(u3, u7, 0x20),
          _mm256_permute2x128_si256(u0, u4, 0x31), _mm256_permute2x128_si256(u1, u5, 0x31),
          _mm256_permute2x128_si256(u2, u6, 0x31), _mm256_permute2x128_si256(u3, u7, 0x31)};
      uint16_t* d = dst + (nb * KB + kb) * 1024 + n0 * 2;
      for (int p = 0; p < 8; p++) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + p * 128), pairs[p]);
    }
  }
}

void packWeight(const float* W, int64_t K, int64_t N, uint16_t* dst) {
  const int64_t KB = K / 16;
  // Rows 2p and 2p+1, 16 columns at a time: convert both and interleave them element by element.
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < N / 64 * KB; blk++) {
    const int64_t nb = blk / KB, kb = blk % KB;
    uint16_t* d = dst + blk * 1024;
    for (int p = 0; p < 8; p++) {
      const float* r0 = W + (kb * 16 + 2 * p) * N + nb * 64;
      const float* r1 = r0 + N;
      for (int c = 0; c < 4; c++) {
        __m512i v = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r1 + c * 16), _mm512_loadu_ps(r0 + c * 16)));
        _mm512_storeu_si512(d + p * 128 + c * 32, interleaveRowPair(v));
      }
    }
  }
}
#else
constexpr bool kOwnPacker = false;
void packWeightTransposed(const float*, int64_t, int64_t, uint16_t*) {}
void packWeight(const float*, int64_t, int64_t, uint16_t*) {}
#endif

// accumulate (backward only): y += a W, through oneDNN's sum post-op (the add happens as the product is stored).
// bf16Out: y is stored in bf16 (rounded from the fp32 accumulator, as converting an fp32 y would be).
PackedLinear& packedLinear(Context& ctx, bool backward, bool accumulate, bool bf16Out, int64_t rows, int64_t in, int64_t out) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  LinearKey key{backward, accumulate, bf16Out, rows, in, out};
  auto it = ctx.linears.find(key);
  if (it == ctx.linears.end()) {
    const int64_t K = backward ? out : in, Nn = backward ? in : out;
    dnnl::memory::desc src({rows, K}, dt::bf16, tag::ab), dst({rows, Nn}, bf16Out ? dt::bf16 : dt::f32, tag::ab);
    dnnl::memory::desc w({K, Nn}, dt::bf16, tag::any);
    auto desc = backward ? dnnl::matmul::desc(src, w, dst)
                         : dnnl::matmul::desc(src, w, dnnl::memory::desc({1, Nn}, dt::f32, tag::ab), dst);
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc pd(desc, attr, cpuEngine());
    // W is stored [out,in]: forward reads its transpose [in,out] through strides.
    dnnl::memory::desc wSrc({K, Nn}, dt::f32, backward ? dnnl::memory::dims{Nn, 1} : dnnl::memory::dims{1, K});
    dnnl::reorder pack(dnnl::reorder::primitive_desc(cpuEngine(), wSrc, cpuEngine(), pd.weights_desc()));
    bool own = kOwnPacker && K % 32 == 0 && Nn % 64 == 0 &&
               pd.weights_desc() == dnnl::memory::desc({K, Nn}, dt::bf16, tag::BA16a64b2a);
    it = ctx.linears.emplace(key, std::make_unique<PackedLinear>(PackedLinear{pd, dnnl::matmul(pd), wSrc, pack, own})).first;
  }
  return *it->second;
}

// forward: y = a Wᵀ + bias (a = x, bf16 [rows,in]); backward: y = a W, or y += a W (a = dy, bf16 [rows,out]).
// y is fp32, or bf16 with bf16Out.
void linearBf16(Context& ctx, bool backward, int64_t rows, int64_t in, int64_t out, const uint16_t* a, const float* w,
                const float* bias, void* y, bool accumulate = false, bool bf16Out = false) {
  PackedLinear& L = packedLinear(ctx, backward, accumulate, bf16Out, rows, in, out);
  dnnl::stream st(cpuEngine());
  void* packed = ctx.packedW.get(L.pd.weights_desc().get_size());
  dnnl::memory wp(L.pd.weights_desc(), cpuEngine(), packed);
  if (L.ownPacker) {
    const int64_t K = backward ? out : in, Nn = backward ? in : out;
    (backward ? packWeight : packWeightTransposed)(w, K, Nn, static_cast<uint16_t*>(packed));
  } else {
    dnnl::memory wf(L.wSrc, cpuEngine(), const_cast<float*>(w));
    L.pack.execute(st, wf, wp);
  }
  dnnl::memory am(L.pd.src_desc(), cpuEngine(), const_cast<uint16_t*>(a));
  dnnl::memory ym(L.pd.dst_desc(), cpuEngine(), y);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DST, ym}};
  if (!backward) args.insert({DNNL_ARG_BIAS, dnnl::memory({{1, out}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab}, cpuEngine(), const_cast<float*>(bias))});
  L.prim.execute(st, args);
  st.wait();
}

// fp32 C[M,N] (+)= op(A) op(B) (the linear layers outside bf16 mode).
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; i++) std::fill(C + i * ldc, C + i * ldc + N, 0.f);
    return;
  }
  dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
}

// One row of biasGrad's pass: the gradient (through GELU or not), added to the bias sums and/or stored in bf16. A
// template per combination, so each loop vectorises without per-element branches.
// dy and GELU's input are both fp32, or both bf16 (autocast's FFN: the output dense's dx and the intermediate dense's
// output kept in bf16 only).
template <typename In, bool Gelu, bool Sum, bool Copy>
void gradRow(const In* __restrict d, const In* __restrict gx, double* __restrict p, uint16_t* __restrict o, int64_t out) {
#pragma omp simd
  for (int64_t j = 0; j < out; j++) {
    const float v = Gelu ? valueOf(d[j]) * geluGrad(valueOf(gx[j])) : valueOf(d[j]);
    if (Sum) p[j] += v;
    if (Copy) o[j] = toBf16(v);
  }
}
template <typename In>
using GradRow = void (*)(const In*, const In*, double*, uint16_t*, int64_t);
template <typename In>
constexpr GradRow<In> kGradRows[2][2][2] = {
    {{gradRow<In, false, false, false>, gradRow<In, false, false, true>}, {gradRow<In, false, true, false>, gradRow<In, false, true, true>}},
    {{gradRow<In, true, false, false>, gradRow<In, true, false, true>}, {gradRow<In, true, true, false>, gradRow<In, true, true, true>}}};

// db += Σ_rows dy: each thread sums a contiguous range of rows (cache-friendly), then partials are added in
// thread order (deterministic for a fixed thread count). With dy16, the same pass also writes dy in bf16 for the
// GEMMs (one read of dy for both). With overwrite, db = Σ dy. With geluX, the gradient is dy·gelu'(geluX), made
// row by row here as geluBackward makes it (bit-identical), so it never goes to memory in fp32.
template <typename In>
void biasGrad(const In* dy, float* db, int64_t rows, int64_t out, uint16_t* dy16, bool overwrite, const In* geluX = nullptr) {
  int threads = rows * out > 65536 ? omp_get_max_threads() : 1;
  std::vector<double> part(db ? static_cast<size_t>(threads * out) : 0, 0.0);
  const GradRow<In> row = kGradRows<In>[geluX != nullptr][db != nullptr][dy16 != nullptr];
#pragma omp parallel num_threads(threads)
  {
    double* p = db ? part.data() + omp_get_thread_num() * out : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++)
      row(dy + r * out, geluX ? geluX + r * out : nullptr, p, dy16 ? dy16 + r * out : nullptr, out);
  }
  if (!db) return;
  if (overwrite) std::fill(db, db + out, 0.0f);
  for (int t = 0; t < threads; t++)
    for (int64_t j = 0; j < out; j++) db[j] += static_cast<float>(part[t * out + j]);
}

// dW = dyᵀ x in bf16 through oneDNN's inner-product weight-gradient kernel: it reads dy and x as stored, where a
// matmul would read dyᵀ through strides (≈15–20% slower here). It overwrites dW, so when dW already holds a
// gradient to add to (accumulation) the product goes to scratch and is added.
void weightGradBf16(Context& ctx, int64_t rows, int64_t in, int64_t out, const uint16_t* dy, const uint16_t* x, float* dw, bool overwrite) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  auto key = std::make_tuple(rows, in, out);
  auto it = ctx.weightGrads.find(key);
  if (it == ctx.weightGrads.end()) {
    dnnl::memory::desc src({rows, in}, dt::bf16, tag::nc), dst({rows, out}, dt::bf16, tag::nc);
    dnnl::memory::desc w16({out, in}, dt::bf16, tag::oi), w32({out, in}, dt::f32, tag::oi);
    dnnl::inner_product_forward::primitive_desc hint(
        dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_training, src, w16, dst), cpuEngine());
    dnnl::inner_product_backward_weights::primitive_desc pd(
        dnnl::inner_product_backward_weights::desc(src, w32, dst), cpuEngine(), hint);
    it = ctx.weightGrads.emplace(key, std::make_unique<WeightGrad>(WeightGrad{pd, dnnl::inner_product_backward_weights(pd)})).first;
  }
  const int64_t n = out * in;
  float* target = dw;
  if (!overwrite) {
    ctx.dwScratch.resize(static_cast<size_t>(n));
    target = ctx.dwScratch.data();
  }
  const WeightGrad& G = *it->second;
  dnnl::stream st(cpuEngine());
  dnnl::memory sm(G.pd.src_desc(), cpuEngine(), const_cast<uint16_t*>(x));
  dnnl::memory dm(G.pd.diff_dst_desc(), cpuEngine(), const_cast<uint16_t*>(dy));
  dnnl::memory wm(G.pd.diff_weights_desc(), cpuEngine(), target);
  G.prim.execute(st, {{DNNL_ARG_SRC, sm}, {DNNL_ARG_DIFF_DST, dm}, {DNNL_ARG_DIFF_WEIGHTS, wm}});
  st.wait();
  if (!overwrite) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dw[i] += target[i];
  }
}

}  // namespace

void linearForward(Context& ctx, const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t in,
                   int64_t out, CopyArg xCopy, uint16_t* y16) {
  if (ctx.bf16 && rows > 0 && in > 0 && out > 0) {
    const uint16_t* x16 = bf16Input(x, rows, in, xCopy, ctx.a16);
    linearBf16(ctx, false, rows, in, out, x16, w, b, y16 ? static_cast<void*>(y16) : y, false, y16 != nullptr);
    return;
  }
#pragma omp parallel for schedule(static) if (rows * out > 65536)
  for (int64_t r = 0; r < rows; r++) std::memcpy(y + r * out, b, sizeof(float) * out);
  gemm(false, true, rows, out, in, x, in, w, in, y, out, true);
}

void linearBackward(Context& ctx, const LinearBackwardArgs& a) {
  const float *dy = a.dy, *x = a.x, *w = a.w;
  float *dx = a.dx, *dw = a.dw, *db = a.db;
  const int64_t rows = a.rows, in = a.in, out = a.out;
  const bool overwrite = a.overwrite, accumulateDx = a.accumulateDx;
  const float* geluX = a.geluX;  // see biasGrad
  const uint16_t *dyIn16 = a.dyIn16, *geluX16 = a.geluX16;
  if (ctx.bf16 && (dx || dw) && rows > 0 && in > 0 && out > 0) {
    if ((geluX16 && !dyIn16) || (dyIn16 && geluX && !geluX16))
      throw KernelError("linearBackward: dy and GELU's input must both be fp32 or both bf16 copies");
    // the GEMMs' dy in bf16: made by the bias pass (one pass over dy: db and the bf16 values), or dy's own copy
    const uint16_t* dy16 = nullptr;
    if (dyIn16 && !geluX16) {
      if (db) biasGrad(dyIn16, db, rows, out, nullptr, overwrite);
      dy16 = dyIn16;
    } else {
      ctx.c16.resize(static_cast<size_t>(rows * out));
      dy16 = ctx.c16.data();
      if (dyIn16) biasGrad(dyIn16, db, rows, out, ctx.c16.data(), overwrite, geluX16);
      else biasGrad(dy, db, rows, out, ctx.c16.data(), overwrite, geluX);
    }
    uint16_t* dx16 = accumulateDx ? nullptr : a.dx16;
    if (dx) linearBf16(ctx, true, rows, in, out, dy16, w, nullptr, dx16 ? static_cast<void*>(dx16) : dx, accumulateDx, dx16 != nullptr);
    if (dw) {
      const uint16_t* x16 = bf16Input(x, rows, in, a.xCopy, ctx.a16);
      weightGradBf16(ctx, rows, in, out, dy16, x16, dw, overwrite);
    }
    return;
  }
  if (geluX) {
    ctx.dGelu.resize(static_cast<size_t>(rows * out));
    geluBackward(geluX, dy, ctx.dGelu.data(), rows * out);
    dy = ctx.dGelu.data();
  }
  if (dx) gemm(false, false, rows, in, out, dy, out, w, in, dx, in, accumulateDx);
  if (dw) gemm(true, false, out, in, rows, dy, out, x, in, dw, in, !overwrite);
  if (db) biasGrad(dy, db, rows, out, nullptr, overwrite);
}

bool bf16Supported() {
  static const bool ok = [] {
    try {
      using desc = dnnl::memory::desc;
      using dt = dnnl::memory::data_type;
      using tag = dnnl::memory::format_tag;
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(desc({2, 2}, dt::bf16, tag::ab), desc({2, 2}, dt::bf16, tag::ab),
                                                         desc({2, 2}, dt::f32, tag::ab)),
                                      cpuEngine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return ok;
}

}  // namespace weitiao
