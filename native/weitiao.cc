// weitiao native backend: the kernels of src/backend/types.ts in C++.
// GEMMs go to oneDNN (fp32 sgemm; bf16 matmul primitives with fp32 accumulation, cached per shape), except the small
// per-head products of bf16 attention backward (own AVX512-BF16 tiles);
// everything else is fused, vectorisable loops parallelised with OpenMP (the runtime oneDNN uses here too).
// Tensors are the JS typed arrays themselves: no copies cross the boundary.
#include <napi.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <cstdlib>
#include <vector>

namespace {

// ------------------------------------------------------------------------------------------------ arguments

float* F(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), "native backend: expected a Float32Array at argument " + std::to_string(i));
  }
  return info[i].As<Napi::Float32Array>().Data();
}
int32_t* I32(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(info.Env(), "native backend: expected an Int32Array at argument " + std::to_string(i));
  }
  return info[i].As<Napi::Int32Array>().Data();
}
const int32_t* OptI32(const Napi::CallbackInfo& info, size_t i) {
  return info[i].IsNull() || info[i].IsUndefined() ? nullptr : I32(info, i);
}
uint16_t* U16(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return info[i].As<Napi::Uint16Array>().Data();
}
uint8_t* U8(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return info[i].As<Napi::Uint8Array>().Data();
}
int64_t N(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int64Value(); }
double D(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }
bool B(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Boolean>().Value(); }
// An optional flag: true only when the argument is there and true.
bool Flag(const Napi::CallbackInfo& info, size_t i) { return info[i].IsBoolean() && info[i].As<Napi::Boolean>().Value(); }

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

// ------------------------------------------------------------------------------------------------ GEMM

bool g_bf16 = false;

dnnl::engine& cpuEngine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

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
void convertBf16To(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* d) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; r++) {
    const float* s = src + r * ld;
    uint16_t* o = d + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; c++) o[c] = toBf16(s[c]);
  }
}
void convertBf16(const float* src, int64_t rows, int64_t cols, int64_t ld, std::vector<uint16_t>& dst) {
  dst.resize(static_cast<size_t>(rows * cols));
  convertBf16To(src, rows, cols, ld, dst.data());
}

// A Bf16Copy (src/backend/types.ts) as the addon receives it: its buffer (or null) at argument i and whether it is
// filled at i + 1.
struct CopyArg {
  uint16_t* data;
  bool ready;
};
CopyArg copyArg(const Napi::CallbackInfo& info, size_t i) { return {U16(info, i), Flag(info, i + 1)}; }

// The bf16 form of a contiguous GEMM input: the caller's copy, converted only if not yet filled, or else a
// conversion into scratch.
const uint16_t* bf16Input(const float* src, int64_t rows, int64_t cols, CopyArg copy, std::vector<uint16_t>& scratch) {
  if (!copy.data) {
    convertBf16(src, rows, cols, cols, scratch);
    return scratch.data();
  }
  if (!copy.ready) convertBf16To(src, rows, cols, cols, copy.data);
  return copy.data;
}

// Creating a oneDNN primitive costs far more than running a small one: primitives are cached per shape.
struct CachedMatmul {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

// Run a cached matmul on raw pointers (oneDNN memory objects are cheap views).
void runMatmul(const CachedMatmul& mm, const void* a, const void* b, void* c) {
  dnnl::memory am(mm.pd.src_desc(), cpuEngine(), const_cast<void*>(a));
  dnnl::memory bm(mm.pd.weights_desc(), cpuEngine(), const_cast<void*>(b));
  dnnl::memory cm(mm.pd.dst_desc(), cpuEngine(), c);
  dnnl::stream st(cpuEngine());
  mm.prim.execute(st, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  st.wait();
}

// Scratch for bf16 copies of GEMM operands (the addon runs on the JS thread only).
std::vector<uint16_t> g_a16, g_c16;

// ------------------------------------------------------------------------------------------------ bf16 linear
// A linear layer's weight is the GEMM operand oneDNN wants in its own blocked layout: one reorder per call converts
// the fp32 master weight to bf16 and packs it (no more work than a plain conversion), and the packed product runs
// ≈10–20% faster than one reading a plain bf16 matrix. Forward y = x Wᵀ + b reads W as [in,out] (with the bias
// fused into the product); backward dx = dy W reads it as [out,in].

struct AlignedBytes {
  std::unique_ptr<uint8_t, decltype(&std::free)> ptr{nullptr, &std::free};
  size_t size = 0;
  void* get(size_t n) {
    if (n > size) {
      ptr.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64)));
      size = n;
    }
    return ptr.get();
  }
};

struct PackedLinear {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  dnnl::memory::desc wSrc;  // the fp32 weight as this product reads it
  dnnl::reorder pack;       // wSrc → pd.weights_desc(): convert and pack in one pass
  bool ownPacker;           // the layout is BA16a64b2a without padding: packWeight does it 3–10× faster
};

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

// 16 bf16 values of row 2p (low half) and the same 16 columns of row 2p+1 (high half) → the 16 pairs
// (row 2p, row 2p+1) of those columns, one 32-bit word each: the layout of a vdpbf16ps operand.
inline __m512i interleaveRowPair(__m512i rows) {
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                         22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, rows);
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
using LinearKey = std::tuple<bool, bool, bool, int64_t, int64_t, int64_t>;  // backward?, accumulate?, bf16 y?, rows, in, out
std::map<LinearKey, std::unique_ptr<PackedLinear>> g_linears;
AlignedBytes g_packedW;

// accumulate (backward only): y += a W, through oneDNN's sum post-op (the add happens as the product is stored).
// bf16Out: y is stored in bf16 (rounded from the fp32 accumulator, as converting an fp32 y would be).
PackedLinear& packedLinear(bool backward, bool accumulate, bool bf16Out, int64_t rows, int64_t in, int64_t out) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  LinearKey key{backward, accumulate, bf16Out, rows, in, out};
  auto it = g_linears.find(key);
  if (it == g_linears.end()) {
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
    it = g_linears.emplace(key, std::make_unique<PackedLinear>(PackedLinear{pd, dnnl::matmul(pd), wSrc, pack, own})).first;
  }
  return *it->second;
}

// forward: y = a Wᵀ + bias (a = x, bf16 [rows,in]); backward: y = a W, or y += a W (a = dy, bf16 [rows,out]).
// y is fp32, or bf16 with bf16Out.
void linearBf16(bool backward, int64_t rows, int64_t in, int64_t out, const uint16_t* a, const float* w,
                const float* bias, void* y, bool accumulate = false, bool bf16Out = false) {
  PackedLinear& L = packedLinear(backward, accumulate, bf16Out, rows, in, out);
  dnnl::stream st(cpuEngine());
  void* packed = g_packedW.get(L.pd.weights_desc().get_size());
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

// ------------------------------------------------------------------------------------------------ bf16 attention
// In bf16 mode attention runs as one batched oneDNN matmul over all (batch, head) pairs per product, reading the
// heads in place through strides ([B·T, H·D] rows seen as [B, H, T, D]); softmax statistics stay fp32.

// The three layouts attention needs, per (batch, head), with Tq query rows and T key rows:
//   RowsByRowsT:   [Tq,D] × [T,D]ᵀ  → [Tq,T]   scores S = Q Kᵀ, and dP = dctx Vᵀ
//   SquareByRows:  [Tq,T] × [T,D]   → [Tq,D]   ctx = P V, and dQ = dS K
//   SquareTByRows: [Tq,T]ᵀ × [Tq,D] → [T,D]    dV = Pᵀ dctx, and dK = dSᵀ Q
enum class HeadOp { RowsByRowsT, SquareByRows, SquareTByRows };
using HeadKey = std::tuple<int, bool, int64_t, int64_t, int64_t, int64_t, int64_t>;  // op, bf16 dst?, B, H, Tq, T, Dh
std::map<HeadKey, std::unique_ptr<CachedMatmul>> g_headMatmuls;

// dst = a × b over [B, H]; a/b bf16, dst f32 (or bf16). [T,D] operands are read and written in place in [B·T, H·D] rows.
void headMatmul(HeadOp op, int64_t B, int64_t H, int64_t Tq, int64_t T, int64_t Dh, const uint16_t* a, const uint16_t* b, void* dst,
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
  auto it = g_headMatmuls.find(key);
  if (it == g_headMatmuls.end()) {
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
    it = g_headMatmuls.emplace(key, std::make_unique<CachedMatmul>(CachedMatmul{pd, dnnl::matmul(pd)})).first;
  }
  runMatmul(*it->second, a, b, dst);
}

std::vector<uint16_t> g_q16, g_k16, g_v16, g_p16, g_d16;
std::vector<float> g_dp, g_probs;
std::vector<uint8_t> g_keep;

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

// ------------------------------------------------------------------------------------------------ kernels

// y = x Wᵀ + b. Arguments 7, 8: x's bf16 copy (or null) and whether it is filled. Argument 9: y's bf16 copy (or
// null): in bf16 mode the product is stored there instead of y (y's only readers want bf16).
Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *w = F(info, 1), *b = F(info, 2), *y = F(info, 3);
  int64_t rows = N(info, 4), in = N(info, 5), out = N(info, 6);
  if (g_bf16 && rows > 0 && in > 0 && out > 0) {
    uint16_t* y16 = U16(info, 9);
    const uint16_t* x16 = bf16Input(x, rows, in, copyArg(info, 7), g_a16);
    linearBf16(false, rows, in, out, x16, w, b, y16 ? static_cast<void*>(y16) : y, false, y16 != nullptr);
    return info.Env().Undefined();
  }
#pragma omp parallel for schedule(static) if (rows * out > 65536)
  for (int64_t r = 0; r < rows; r++) std::memcpy(y + r * out, b, sizeof(float) * out);
  gemm(false, true, rows, out, in, x, in, w, in, y, out, true);
  return info.Env().Undefined();
}

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

// dx = dy · gelu'(x)
void geluBackward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * geluGrad(x[i]);
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
struct WeightGrad {
  dnnl::inner_product_backward_weights::primitive_desc pd;
  dnnl::inner_product_backward_weights prim;
};
std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<WeightGrad>> g_weightGrads;
std::vector<float> g_dwScratch, g_dGelu;

void weightGradBf16(int64_t rows, int64_t in, int64_t out, const uint16_t* dy, const uint16_t* x, float* dw, bool overwrite) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  auto key = std::make_tuple(rows, in, out);
  auto it = g_weightGrads.find(key);
  if (it == g_weightGrads.end()) {
    dnnl::memory::desc src({rows, in}, dt::bf16, tag::nc), dst({rows, out}, dt::bf16, tag::nc);
    dnnl::memory::desc w16({out, in}, dt::bf16, tag::oi), w32({out, in}, dt::f32, tag::oi);
    dnnl::inner_product_forward::primitive_desc hint(
        dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_training, src, w16, dst), cpuEngine());
    dnnl::inner_product_backward_weights::primitive_desc pd(
        dnnl::inner_product_backward_weights::desc(src, w32, dst), cpuEngine(), hint);
    it = g_weightGrads.emplace(key, std::make_unique<WeightGrad>(WeightGrad{pd, dnnl::inner_product_backward_weights(pd)})).first;
  }
  const int64_t n = out * in;
  float* target = dw;
  if (!overwrite) {
    g_dwScratch.resize(static_cast<size_t>(n));
    target = g_dwScratch.data();
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

// dx = dy W ; dW += dyᵀ x ; db += Σ dy. Argument 9, overwrite: dW = dyᵀ x and db = Σ dy instead (their contents
// are stale: no gradient since zeroGrad). Arguments 10, 11: x's bf16 copy and whether it is filled. Argument 12:
// GELU's input when dy is the gradient at GELU's output (see biasGrad). Argument 13: dx += dy W. Argument 14: dx's bf16
// copy (or null; bf16 mode, not with argument 13): dx = dy W is stored there instead of dx (dx's only reader wants bf16).
// Arguments 15, 16 (bf16 mode): dy and GELU's input given as bf16 copies only (filled), read instead of 0 and 12.
Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  float *dy = F(info, 0), *x = F(info, 1), *w = F(info, 2), *dx = F(info, 3), *dw = F(info, 4), *db = F(info, 5);
  int64_t rows = N(info, 6), in = N(info, 7), out = N(info, 8);
  bool overwrite = Flag(info, 9), accumulateDx = Flag(info, 13);
  const float* geluX = F(info, 12);  // see biasGrad
  const uint16_t *dyIn16 = U16(info, 15), *geluX16 = U16(info, 16);
  if (g_bf16 && (dx || dw) && rows > 0 && in > 0 && out > 0) {
    if ((geluX16 && !dyIn16) || (dyIn16 && geluX && !geluX16))
      throw Napi::Error::New(info.Env(), "linearBackward: dy and GELU's input must both be fp32 or both bf16 copies");
    // the GEMMs' dy in bf16: made by the bias pass (one pass over dy: db and the bf16 values), or dy's own copy
    const uint16_t* dy16 = nullptr;
    if (dyIn16 && !geluX16) {
      if (db) biasGrad(dyIn16, db, rows, out, nullptr, overwrite);
      dy16 = dyIn16;
    } else {
      g_c16.resize(static_cast<size_t>(rows * out));
      dy16 = g_c16.data();
      if (dyIn16) biasGrad(dyIn16, db, rows, out, g_c16.data(), overwrite, geluX16);
      else biasGrad(dy, db, rows, out, g_c16.data(), overwrite, geluX);
    }
    uint16_t* dx16 = accumulateDx ? nullptr : U16(info, 14);
    if (dx) linearBf16(true, rows, in, out, dy16, w, nullptr, dx16 ? static_cast<void*>(dx16) : dx, accumulateDx, dx16 != nullptr);
    if (dw) {
      const uint16_t* x16 = bf16Input(x, rows, in, copyArg(info, 10), g_a16);
      weightGradBf16(rows, in, out, dy16, x16, dw, overwrite);
    }
    return info.Env().Undefined();
  }
  if (geluX) {
    g_dGelu.resize(static_cast<size_t>(rows * out));
    geluBackward(geluX, dy, g_dGelu.data(), rows * out);
    dy = g_dGelu.data();
  }
  if (dx) gemm(false, false, rows, in, out, dy, out, w, in, dx, in, accumulateDx);
  if (dw) gemm(true, false, out, in, rows, dy, out, x, in, dw, in, !overwrite);
  if (db) biasGrad(dy, db, rows, out, nullptr, overwrite);
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  float *a = F(info, 0), *b = F(info, 1), *o = F(info, 2);
  int64_t n = N(info, 3);
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i];
  return info.Env().Undefined();
}

template <typename In, typename Out>
void geluForward(const In* x, Out* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; i++) {
    const float v = valueOf(x[i]);
    storeAs(y[i], 0.5f * v * (1.0f + erfFast(v * 0.70710678118654752f)));
  }
}

// y = gelu(x); with argument 3 (y's bf16 copy) only the copy is written: y's sole reader is the next GEMM, and
// skipping the fp32 write and a conversion pass saves ≈50 MB of traffic per BERT-base layer. With argument 4 (x's
// bf16 copy, filled) x is read from it instead.
Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  uint16_t *y16 = U16(info, 3), *x16 = U16(info, 4);
  const int64_t n = N(info, 2);
  if (x16 && y16) geluForward(x16, y16, n);
  else if (x16) geluForward(x16, F(info, 1), n);
  else if (y16) geluForward(F(info, 0), y16, n);
  else geluForward(F(info, 0), F(info, 1), n);
  return info.Env().Undefined();
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  geluBackward(F(info, 0), F(info, 1), F(info, 2), N(info, 3));
  return info.Env().Undefined();
}

Napi::Value TanhForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *y = F(info, 1);
  int64_t n = N(info, 2);
  for (int64_t i = 0; i < n; i++) y[i] = std::tanh(x[i]);
  return info.Env().Undefined();
}

Napi::Value TanhBackward(const Napi::CallbackInfo& info) {
  float *y = F(info, 0), *dy = F(info, 1), *dx = F(info, 2);
  int64_t n = N(info, 3);
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
  return info.Env().Undefined();
}

// gelu_new (kind 0, ALBERT: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in float as torch computes it) and relu
// (kind 1). Arguments: kind, x, y, n / kind, x, dy, dx, n (dx = dy·act'(x)).
Napi::Value ActivationForward(const Napi::CallbackInfo& info) {
  const bool relu = N(info, 0) == 1;
  const float* x = F(info, 1);
  float* y = F(info, 2);
  const int64_t n = N(info, 3);
  const float c = 0.7978845608028654f;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = relu ? (v > 0.f ? v : 0.f) : 0.5f * v * (1.f + std::tanh(c * (v + 0.044715f * v * v * v)));
  }
  return info.Env().Undefined();
}

Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  const bool relu = N(info, 0) == 1;
  const float *x = F(info, 1), *dy = F(info, 2);
  float* dx = F(info, 3);
  const int64_t n = N(info, 4);
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
  return info.Env().Undefined();
}

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

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *g = F(info, 1), *b = F(info, 2), *y = F(info, 3), *mean = F(info, 4), *rstd = F(info, 5);
  int64_t rows = N(info, 6), cols = N(info, 7);
  double eps = D(info, 8);
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
  for (int64_t r = 0; r < rows; r++) layerNormRow(x + r * cols, g, b, y + r * cols, nullptr, mean[r], rstd[r], cols, eps);
  return info.Env().Undefined();
}

// sum = dropout(x) + residual; y = LayerNorm(sum): DropoutForward, Add and LayerNormForward fused row by row (the
// row stays in L1 between the three), with the same mask stream and the same arithmetic as the three kernels.
// Arguments: x, residual, gamma, beta, sum, y, mean, rstd, rows, cols, eps, p (null: no dropout), seed, offset,
// keep, y's bf16 copy (or null).
Napi::Value DropoutAddLayerNorm(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *res = F(info, 1), *g = F(info, 2), *b = F(info, 3), *sum = F(info, 4), *y = F(info, 5);
  float *mean = F(info, 6), *rstd = F(info, 7);
  int64_t rows = N(info, 8), cols = N(info, 9);
  double eps = D(info, 10);
  bool drop = !info[11].IsNull();
  double p = drop ? D(info, 11) : 0.0;
  uint32_t seed = static_cast<uint32_t>(N(info, 12)), offset = static_cast<uint32_t>(N(info, 13));
  uint8_t* keep = drop ? U8(info, 14) : nullptr;
  uint16_t* y16 = U16(info, 15);
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
  return info.Env().Undefined();
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  float *dy = F(info, 0), *x = F(info, 1), *mean = F(info, 2), *rstd = F(info, 3), *g = F(info, 4), *dx = F(info, 5);
  float *dg = F(info, 6), *db = F(info, 7);
  int64_t rows = N(info, 8), cols = N(info, 9);
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
  return info.Env().Undefined();
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

// Where each sequence's rows are for attention: AttentionShape.lengths and .starts (arguments i, i + 1; packed rows
// come with lengths and every query row) and the rows of k and v in all (of q too unless Tq = 1).
struct SequenceRows {
  const int32_t *lengths, *starts;
  int64_t total;
  // Rows sequence b's attention computes: its length, or T without lengths; the per-head bf16 kernels round it up to
  // their tile of 16 (the keys in between are masked).
  int64_t attended(int64_t b, int64_t T) const { return lengths ? lengths[b] : T; }
  int64_t tiled(int64_t b, int64_t T) const { return std::min(T, (attended(b, T) + 15) / 16 * 16); }
  int64_t first(int64_t b, int64_t T) const { return starts ? starts[b] : b * T; }
};
SequenceRows sequenceRows(const Napi::CallbackInfo& info, size_t i, int64_t Bn, int64_t T, int64_t Tq) {
  const int32_t *lengths = OptI32(info, i), *starts = OptI32(info, i + 1);
  if (starts && (!lengths || Tq != T)) throw Napi::Error::New(info.Env(), "attention: packed rows (starts) need lengths and every query row");
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
  return kHeadKernels && Tq == T && T % 16 == 0 && Dh % 16 == 0;
}

// q/ctx: [B·Tq, W]; k/v: [B·T, W]; probs/keep: [B, H, Tq, T]. Tq (argument 14) is T, or 1 for [CLS]-only.
// Arguments 15–20: bf16 copies of q, k, v with their filled flags (or null), used in bf16 mode; 21–22: the bf16
// copy of the dropped probabilities P' (forward fills it; backward reads it instead of rebuilding P' when filled);
// 23: forward only, ctx's bf16 copy (or null), written instead of ctx.
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  float *q = F(info, 0), *k = F(info, 1), *v = F(info, 2), *mask = F(info, 3);
  int64_t Bn = N(info, 4), T = N(info, 5), H = N(info, 6), Dh = N(info, 7);
  float *probs = F(info, 8), *ctx = F(info, 9);  // probs null: nothing is kept for backward
  bool dropout = !info[10].IsNull();
  double p = dropout ? D(info, 10) : 0;
  uint32_t seed = dropout ? static_cast<uint32_t>(N(info, 11)) : 0, offset = dropout ? static_cast<uint32_t>(N(info, 12)) : 0;
  uint8_t* keep = U8(info, 13);
  int64_t Tq = N(info, 14);
  int64_t W = H * Dh;
  float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  uint32_t threshold = dropThreshold(p);
  float keepScale = dropout ? static_cast<float>(1.0 / (1.0 - p)) : 1.0f;
  const SequenceRows seq = sequenceRows(info, 24, Bn, T, Tq);
  const int64_t np = Bn * H * Tq * T;
  uint16_t* pKept = U16(info, 21);  // P' in bf16 for backward to keep, or null
  if (g_bf16 && useHeadKernels(T, Tq, Dh) && (seq.lengths || !probs)) {
    // Per (sequence, head): over its rows rounded up to 16 (the kernels' tile) when lengths are given, and with nothing
    // kept (inference) its probabilities stay in per-thread scratch instead of going through memory.
    const uint16_t* q16 = bf16Input(q, seq.total, W, copyArg(info, 15), g_q16);
    const uint16_t* k16 = bf16Input(k, seq.total, W, copyArg(info, 17), g_k16);
    const uint16_t* v16 = bf16Input(v, seq.total, W, copyArg(info, 19), g_v16);
    uint16_t* ctx16 = U16(info, 23);
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
    return info.Env().Undefined();
  }
  if (!probs) {  // the layouts below go through memory: scratch for what is not kept
    g_probs.resize(static_cast<size_t>(np));
    probs = g_probs.data();
  }
  if (dropout && !keep) {
    g_keep.resize(static_cast<size_t>(np));
    keep = g_keep.data();
  }
  if (g_bf16) {
    if (seq.starts) throw Napi::Error::New(info.Env(), "attentionForward: packed rows need the per-head kernels (see packedAttention)");
    const uint16_t* q16 = bf16Input(q, Bn * Tq, W, copyArg(info, 15), g_q16);
    const uint16_t* k16 = bf16Input(k, Bn * T, W, copyArg(info, 17), g_k16);
    const uint16_t* v16 = bf16Input(v, Bn * T, W, copyArg(info, 19), g_v16);
    uint16_t* p16 = pKept;
    if (!p16) {
      g_p16.resize(static_cast<size_t>(np));
      p16 = g_p16.data();
    }
    uint16_t* ctx16 = U16(info, 23);  // ctx's bf16 copy: the product goes there instead of ctx
    headMatmul(HeadOp::RowsByRowsT, Bn, H, Tq, T, Dh, q16, k16, probs);
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
    headMatmul(HeadOp::SquareByRows, Bn, H, Tq, T, Dh, p16, v16, ctx16 ? static_cast<void*>(ctx16) : ctx, ctx16 != nullptr);
    return info.Env().Undefined();
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
  return info.Env().Undefined();
}

// Shapes as in AttentionForward; Tq is argument 14, the bf16 copies 15–22; 23–24: dctx's bf16 copy (read instead of
// dctx when filled).
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  float *q = F(info, 0), *k = F(info, 1), *v = F(info, 2), *probs = F(info, 3);
  uint8_t* keep = U8(info, 4);
  double p = D(info, 5);
  float* dctx = F(info, 6);
  int64_t Bn = N(info, 7), T = N(info, 8), H = N(info, 9), Dh = N(info, 10);
  float *dq = F(info, 11), *dk = F(info, 12), *dv = F(info, 13);
  int64_t Tq = N(info, 14);
  const SequenceRows seq = sequenceRows(info, 25, Bn, T, Tq);
  int64_t W = H * Dh;
  float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  float keepScale = keep ? static_cast<float>(1.0 / (1.0 - p)) : 1.0f;
  if (g_bf16) {
    const int64_t np = Bn * H * Tq * T;
    const uint16_t* q16 = bf16Input(q, seq.starts ? seq.total : Bn * Tq, W, copyArg(info, 15), g_q16);
    const uint16_t* k16 = bf16Input(k, seq.total, W, copyArg(info, 17), g_k16);
    const uint16_t* v16 = bf16Input(v, seq.total, W, copyArg(info, 19), g_v16);
    const CopyArg kept = copyArg(info, 21), dctxCopy = copyArg(info, 23);
    const uint16_t* dctx16 = dctxCopy.ready ? dctxCopy.data : nullptr;
    const uint16_t* pDropped = kept.data;
    if (!kept.data || !kept.ready) {  // rebuild P' (the batched path below then reuses g_p16 for dS)
      g_p16.resize(static_cast<size_t>(np));
#pragma omp parallel for simd schedule(static)
      for (int64_t t = 0; t < np; t++) g_p16[t] = toBf16(keep ? (keep[t] ? probs[t] * keepScale : 0.0f) : probs[t]);
      pDropped = g_p16.data();
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
      return info.Env().Undefined();
    }
    if (seq.starts) throw Napi::Error::New(info.Env(), "attentionBackward: packed rows need the per-head kernels (see packedAttention)");
    if (!dctx16) {
      convertBf16(dctx, Bn * Tq, W, W, g_d16);
      dctx16 = g_d16.data();
    }
    headMatmul(HeadOp::SquareTByRows, Bn, H, Tq, T, Dh, pDropped, dctx16, dv);  // dV = P'ᵀ dctx
    g_dp.resize(static_cast<size_t>(np));
    g_p16.resize(static_cast<size_t>(np));  // dS in bf16; overwrites a rebuilt P' only after dV has read it
    headMatmul(HeadOp::RowsByRowsT, Bn, H, Tq, T, Dh, dctx16, v16, g_dp.data());  // dP' = dctx Vᵀ
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < Bn * H * Tq; r++) {
      // g_p16 is reused: now dS in bf16
      softmaxBackwardRow(g_dp.data() + r * T, probs + r * T, keep ? keep + r * T : nullptr, T, keepScale, scale,
                         g_p16.data() + r * T);
    }
    headMatmul(HeadOp::SquareByRows, Bn, H, Tq, T, Dh, g_p16.data(), k16, dq);   // dQ = dS K
    headMatmul(HeadOp::SquareTByRows, Bn, H, Tq, T, Dh, g_p16.data(), q16, dk);  // dK = dSᵀ Q
    return info.Env().Undefined();
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
  return info.Env().Undefined();
}

Napi::Value DropoutForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *y = F(info, 1);
  uint8_t* keep = U8(info, 2);
  int64_t n = N(info, 3);
  double p = D(info, 4);
  uint32_t seed = static_cast<uint32_t>(N(info, 5)), offset = static_cast<uint32_t>(N(info, 6));
  uint32_t threshold = dropThreshold(p);
  float s = static_cast<float>(1.0 / (1.0 - p));
  const int64_t chunk = 16384;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t c = 0; c < n; c += chunk)
    dropoutRow(x + c, keep + c, offset + static_cast<uint32_t>(c), std::min(chunk, n - c), seed, threshold, s, y + c);
  return info.Env().Undefined();
}

Napi::Value DropoutBackward(const Napi::CallbackInfo& info) {
  float *dy = F(info, 0), *dx = F(info, 1);
  uint8_t* keep = U8(info, 2);
  int64_t n = N(info, 3);
  float s = static_cast<float>(1.0 / (1.0 - D(info, 4)));
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) dx[i] = keep[i] ? dy[i] * s : 0.0f;
  return info.Env().Undefined();
}

// Gathers check every id against its table's rows (the typed array's length / H) before touching memory: a config
// smaller than the tokenizer must be an error, never a read or write outside the table (the model checks first).
void CheckIds(const Napi::CallbackInfo& info, size_t idArg, size_t table, int64_t rows, int64_t H, int64_t skip,
              const char* what) {
  if (H <= 0 || rows < 0) throw Napi::RangeError::New(info.Env(), "native backend: embedding sizes must be positive");
  const int32_t* ids = I32(info, idArg);
  int64_t limit = static_cast<int64_t>(info[table].As<Napi::TypedArray>().ElementLength()) / H;
  if (info[idArg].As<Napi::TypedArray>().ElementLength() < static_cast<size_t>(rows)) {
    throw Napi::RangeError::New(info.Env(), "native backend: fewer ids than rows");
  }
  for (int64_t r = 0; r < rows; r++) {
    if (ids[r] == skip) continue;
    if (ids[r] < 0 || ids[r] >= limit) {
      throw Napi::RangeError::New(info.Env(), std::string("native backend: id ") + std::to_string(ids[r]) + " at row " +
                                                  std::to_string(r) + " is outside the " + what + " table (" +
                                                  std::to_string(limit) + " rows)");
    }
  }
}

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  int32_t *ids = I32(info, 0), *pos = I32(info, 1), *type = I32(info, 2);
  float *word = F(info, 3), *pe = F(info, 4), *te = F(info, 5), *out = F(info, 6);
  int64_t rows = N(info, 7), H = N(info, 8);
  CheckIds(info, 0, 3, rows, H, INT64_MIN, "word");
  CheckIds(info, 1, 4, rows, H, INT64_MIN, "position");
  CheckIds(info, 2, 5, rows, H, INT64_MIN, "token type");
  if (info[6].As<Napi::TypedArray>().ElementLength() < static_cast<size_t>(rows * H)) {
    throw Napi::RangeError::New(info.Env(), "native backend: embedding output too small");
  }
#pragma omp parallel for schedule(static) if (rows * H > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const float *w = word + static_cast<int64_t>(ids[r]) * H, *p = pe + static_cast<int64_t>(pos[r]) * H,
                *t = te + static_cast<int64_t>(type[r]) * H;
    float* o = out + r * H;
    for (int64_t j = 0; j < H; j++) o[j] = w[j] + p[j] + t[j];
  }
  return info.Env().Undefined();
}

// Scatter-add by rows in input order (serial per row, parallel over columns: no races, deterministic).
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  int32_t* ids = I32(info, 0);
  float *dOut = F(info, 1), *table = F(info, 2);
  int64_t rows = N(info, 3), H = N(info, 4), skip = N(info, 5);
  CheckIds(info, 0, 2, rows, H, skip, "embedding gradient");
  if (info[1].As<Napi::TypedArray>().ElementLength() < static_cast<size_t>(rows * H)) {
    throw Napi::RangeError::New(info.Env(), "native backend: embedding gradient input too small");
  }
  for (int64_t r = 0; r < rows; r++) {
    if (ids[r] == skip) continue;
    float* t = table + static_cast<int64_t>(ids[r]) * H;
    const float* d = dOut + r * H;
    for (int64_t j = 0; j < H; j++) t[j] += d[j];
  }
  return info.Env().Undefined();
}

Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  float* logits = F(info, 0);
  int32_t* labels = I32(info, 1);
  float* probs = F(info, 2);
  int64_t rows = N(info, 3), C = N(info, 4);
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
  return Napi::Number::New(info.Env(), loss);
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  float* probs = F(info, 0);
  int32_t* labels = I32(info, 1);
  float* d = F(info, 2);
  int64_t rows = N(info, 3), C = N(info, 4);
  double scale = D(info, 5);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < C; c++)
      d[r * C + c] = labels[r] < 0 ? 0.0f : static_cast<float>((probs[r * C + c] - (c == labels[r] ? 1.0 : 0.0)) * scale);
  return info.Env().Undefined();
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  float *p = F(info, 0), *g = F(info, 1), *m = F(info, 2), *v = F(info, 3);
  int64_t n = N(info, 4);
  double lr = D(info, 5), b1 = D(info, 6), b2 = D(info, 7), eps = D(info, 8), wd = D(info, 9);
  double step = D(info, 10);
  float gradScale = static_cast<float>(D(info, 11));  // clipping's coefficient, as Scale would apply it
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
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  float* x = F(info, 0);
  int64_t n = N(info, 1);
  double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) s += static_cast<double>(x[i]) * x[i];
  return Napi::Number::New(info.Env(), s);
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  float* x = F(info, 0);
  int64_t n = N(info, 1);
  float s = static_cast<float>(D(info, 2));
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) x[i] *= s;
  return info.Env().Undefined();
}

Napi::Value Configure(const Napi::CallbackInfo& info) {
  g_bf16 = B(info, 0);
  int threads = static_cast<int>(N(info, 1));
  if (threads > 0) omp_set_num_threads(threads);
  return info.Env().Undefined();
}

// Ask the kernel to back a large, not yet touched buffer with 2 MB pages (transparent huge pages, where the system
// allows them on request): first touches then fault once per 2 MB instead of once per 4 KB — on virtual machines a
// 4 KB fault costs 10–20 µs, so a BERT-base step's fresh gigabyte took seconds of system time — and GEMM operands
// need fewer TLB entries. Only the 2 MB-aligned interior is advised. Returns whether the advice was taken.
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  bool ok = false;
#ifdef MADV_HUGEPAGE
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  const uintptr_t huge = uintptr_t{2} << 20, start = reinterpret_cast<uintptr_t>(buffer.Data());
  const uintptr_t from = (start + huge - 1) & ~(huge - 1), to = (start + buffer.ByteLength()) & ~(huge - 1);
  ok = to > from && madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE) == 0;
#endif
  return Napi::Boolean::New(info.Env(), ok);
}

// Whether attention takes packed rows (AttentionShape.starts) at this shape: arguments bf16?, T, Tq, head size.
Napi::Value PackedAttention(const Napi::CallbackInfo& info) {
  const int64_t T = N(info, 1), Tq = N(info, 2), Dh = N(info, 3);
  return Napi::Boolean::New(info.Env(), B(info, 0) ? useHeadKernels(T, Tq, Dh) : Tq == T);
}

// Whether oneDNN has bf16 GEMMs on this CPU: v2.6 has none without AVX-512, and creating one there throws from
// deep inside a kernel call. Asked once, by building a tiny bf16 matmul.
bool Bf16Supported() {
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

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const dnnl_version_t* ver = dnnl_version();
  o.Set("onednn", std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." + std::to_string(ver->patch));
  o.Set("threads", omp_get_max_threads());
  o.Set("bf16", g_bf16);
  o.Set("bf16Supported", Bf16Supported());
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("linearForward", Napi::Function::New(env, LinearForward));
  exports.Set("linearBackward", Napi::Function::New(env, LinearBackward));
  exports.Set("add", Napi::Function::New(env, Add));
  exports.Set("geluForward", Napi::Function::New(env, GeluForward));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward));
  exports.Set("tanhForward", Napi::Function::New(env, TanhForward));
  exports.Set("activationForward", Napi::Function::New(env, ActivationForward));
  exports.Set("activationBackward", Napi::Function::New(env, ActivationBackward));
  exports.Set("tanhBackward", Napi::Function::New(env, TanhBackward));
  exports.Set("layerNormForward", Napi::Function::New(env, LayerNormForward));
  exports.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
  exports.Set("packedAttention", Napi::Function::New(env, PackedAttention));
  exports.Set("dropoutForward", Napi::Function::New(env, DropoutForward));
  exports.Set("dropoutAddLayerNorm", Napi::Function::New(env, DropoutAddLayerNorm));
  exports.Set("dropoutBackward", Napi::Function::New(env, DropoutBackward));
  exports.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward));
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward));
  exports.Set("adamw", Napi::Function::New(env, AdamW));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares));
  exports.Set("scale", Napi::Function::New(env, Scale));
  exports.Set("configure", Napi::Function::New(env, Configure));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages));
  return exports;
}

}  // namespace

NODE_API_MODULE(weitiao, Init)
