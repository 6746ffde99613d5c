// weitiao native backend: the Node binding. Reads each call's arguments (the JS typed arrays themselves: no copies
// cross the boundary; argument orders as src/backend/native.ts passes them), runs the kernel (kernels.h) with this
// addon instance's Context, and turns a kernel's KernelError into a JS exception. The only file that includes napi.h.
#include <napi.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>
#include <sys/mman.h>

#include <cstdint>
#include <string>

#include "kernels.h"

namespace {

using namespace weitiao;

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

// A Bf16Copy (src/backend/types.ts) as the addon receives it: its buffer (or null) at argument i and whether it is
// filled at i + 1.
CopyArg copyArg(const Napi::CallbackInfo& info, size_t i) { return {U16(info, i), Flag(info, i + 1)}; }

// A typed array at argument i with its length in elements (the embedding kernels check ids against them).
template <typename T>
Span<T> span(T* data, const Napi::CallbackInfo& info, size_t i) {
  return {data, info[i].As<Napi::TypedArray>().ElementLength()};
}

// This addon instance's context (see Init).
Context& context(const Napi::CallbackInfo& info) { return *info.Env().GetInstanceData<Context>(); }

// Runs a kernel, turning its refusal of the arguments into the JS exception a caller expects.
template <typename Fn>
auto guarded(const Napi::CallbackInfo& info, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const KernelError& e) {
    if (e.range) throw Napi::RangeError::New(info.Env(), e.what());
    throw Napi::Error::New(info.Env(), e.what());
  }
}

// ------------------------------------------------------------------------------------------------ kernels

// Arguments: x, w, b, y, rows, in, out; 7, 8: x's bf16 copy (or null) and whether it is filled; 9: y's bf16 copy (or
// null), see linearForward.
Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *w = F(info, 1), *b = F(info, 2), *y = F(info, 3);
  int64_t rows = N(info, 4), in = N(info, 5), out = N(info, 6);
  linearForward(context(info), x, w, b, y, rows, in, out, copyArg(info, 7), U16(info, 9));
  return info.Env().Undefined();
}

// Arguments: dy, x, w, dx, dw, db, rows, in, out; 9: overwrite; 10, 11: x's bf16 copy and whether it is filled;
// 12: GELU's input; 13: accumulate dx; 14: dx's bf16 copy; 15, 16: dy's and GELU's input's bf16 copies (see
// LinearBackwardArgs).
Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  LinearBackwardArgs a;
  a.dy = F(info, 0);
  a.x = F(info, 1);
  a.w = F(info, 2);
  a.dx = F(info, 3);
  a.dw = F(info, 4);
  a.db = F(info, 5);
  a.rows = N(info, 6);
  a.in = N(info, 7);
  a.out = N(info, 8);
  a.overwrite = Flag(info, 9);
  a.accumulateDx = Flag(info, 13);
  a.geluX = F(info, 12);
  a.dyIn16 = U16(info, 15);
  a.geluX16 = U16(info, 16);
  a.dx16 = U16(info, 14);
  a.xCopy = copyArg(info, 10);
  guarded(info, [&] { linearBackward(context(info), a); });
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  float *a = F(info, 0), *b = F(info, 1), *o = F(info, 2);
  add(a, b, o, N(info, 3));
  return info.Env().Undefined();
}

// Arguments: x, y, n, y's bf16 copy (or null), x's bf16 copy (filled, or null); see geluForward.
Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  uint16_t *y16 = U16(info, 3), *x16 = U16(info, 4);
  const int64_t n = N(info, 2);
  const float* x = x16 ? nullptr : F(info, 0);  // read from its copy instead
  float* y = y16 ? nullptr : F(info, 1);         // only the copy is written
  geluForward(x, y, n, y16, x16);
  return info.Env().Undefined();
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  geluBackward(F(info, 0), F(info, 1), F(info, 2), N(info, 3));
  return info.Env().Undefined();
}

Napi::Value TanhForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *y = F(info, 1);
  tanhForward(x, y, N(info, 2));
  return info.Env().Undefined();
}

Napi::Value TanhBackward(const Napi::CallbackInfo& info) {
  float *y = F(info, 0), *dy = F(info, 1), *dx = F(info, 2);
  tanhBackward(y, dy, dx, N(info, 3));
  return info.Env().Undefined();
}

// Arguments: kind (0: gelu_new, 1: relu), x, y, n / kind, x, dy, dx, n.
Napi::Value ActivationForward(const Napi::CallbackInfo& info) {
  const bool relu = N(info, 0) == 1;
  const float* x = F(info, 1);
  float* y = F(info, 2);
  activationForward(relu, x, y, N(info, 3));
  return info.Env().Undefined();
}

Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  const bool relu = N(info, 0) == 1;
  const float *x = F(info, 1), *dy = F(info, 2);
  float* dx = F(info, 3);
  activationBackward(relu, x, dy, dx, N(info, 4));
  return info.Env().Undefined();
}

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *g = F(info, 1), *b = F(info, 2), *y = F(info, 3), *mean = F(info, 4), *rstd = F(info, 5);
  int64_t rows = N(info, 6), cols = N(info, 7);
  layerNormForward(x, g, b, y, mean, rstd, rows, cols, D(info, 8));
  return info.Env().Undefined();
}

// Arguments: x, residual, gamma, beta, sum, y, mean, rstd, rows, cols, eps, p (null: no dropout), seed, offset,
// keep, y's bf16 copy (or null).
Napi::Value DropoutAddLayerNorm(const Napi::CallbackInfo& info) {
  DropoutAddLayerNormArgs a;
  a.x = F(info, 0);
  a.residual = F(info, 1);
  a.gamma = F(info, 2);
  a.beta = F(info, 3);
  a.sum = F(info, 4);
  a.y = F(info, 5);
  a.mean = F(info, 6);
  a.rstd = F(info, 7);
  a.rows = N(info, 8);
  a.cols = N(info, 9);
  a.eps = D(info, 10);
  a.dropout = !info[11].IsNull();
  a.p = a.dropout ? D(info, 11) : 0.0;
  a.seed = static_cast<uint32_t>(N(info, 12));
  a.offset = static_cast<uint32_t>(N(info, 13));
  a.keep = a.dropout ? U8(info, 14) : nullptr;
  a.y16 = U16(info, 15);
  dropoutAddLayerNorm(a);
  return info.Env().Undefined();
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  float *dy = F(info, 0), *x = F(info, 1), *mean = F(info, 2), *rstd = F(info, 3), *g = F(info, 4), *dx = F(info, 5);
  float *dg = F(info, 6), *db = F(info, 7);
  layerNormBackward(dy, x, mean, rstd, g, dx, dg, db, N(info, 8), N(info, 9));
  return info.Env().Undefined();
}

// Arguments: q, k, v, mask, B, T, H, head size, probs (or null), ctx, p (null: no dropout), seed, offset, keep (or
// null), Tq; 15–20: bf16 copies of q, k, v with their filled flags; 21–22: P''s bf16 copy and its flag; 23: ctx's
// bf16 copy; 24, 25: AttentionShape.lengths and .starts (or null).
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  AttentionForwardArgs a;
  a.q = F(info, 0);
  a.k = F(info, 1);
  a.v = F(info, 2);
  a.mask = F(info, 3);
  a.batch = N(info, 4);
  a.T = N(info, 5);
  a.heads = N(info, 6);
  a.headDim = N(info, 7);
  a.probs = F(info, 8);
  a.ctx = F(info, 9);
  a.dropout = !info[10].IsNull();
  a.p = a.dropout ? D(info, 10) : 0;
  a.seed = a.dropout ? static_cast<uint32_t>(N(info, 11)) : 0;
  a.offset = a.dropout ? static_cast<uint32_t>(N(info, 12)) : 0;
  a.keep = U8(info, 13);
  a.Tq = N(info, 14);
  a.lengths = OptI32(info, 24);
  a.starts = OptI32(info, 25);
  a.q16 = copyArg(info, 15);
  a.k16 = copyArg(info, 17);
  a.v16 = copyArg(info, 19);
  a.pKept = U16(info, 21);
  a.ctx16 = U16(info, 23);
  guarded(info, [&] { attentionForward(context(info), a); });
  return info.Env().Undefined();
}

// Arguments: q, k, v, probs, keep (or null), p, dctx, B, T, H, head size, dq, dk, dv, Tq; 15–22: the bf16 copies as
// in AttentionForward; 23–24: dctx's bf16 copy and its flag; 25, 26: lengths and starts (or null).
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  AttentionBackwardArgs a;
  a.q = F(info, 0);
  a.k = F(info, 1);
  a.v = F(info, 2);
  a.probs = F(info, 3);
  a.keep = U8(info, 4);
  a.p = D(info, 5);
  a.dctx = F(info, 6);
  a.batch = N(info, 7);
  a.T = N(info, 8);
  a.heads = N(info, 9);
  a.headDim = N(info, 10);
  a.dq = F(info, 11);
  a.dk = F(info, 12);
  a.dv = F(info, 13);
  a.Tq = N(info, 14);
  a.lengths = OptI32(info, 25);
  a.starts = OptI32(info, 26);
  a.q16 = copyArg(info, 15);
  a.k16 = copyArg(info, 17);
  a.v16 = copyArg(info, 19);
  a.pKept = copyArg(info, 21);
  a.dctx16 = copyArg(info, 23);
  guarded(info, [&] { attentionBackward(context(info), a); });
  return info.Env().Undefined();
}

// Whether attention takes packed rows (AttentionShape.starts) at this shape: arguments bf16?, T, Tq, head size.
Napi::Value PackedAttention(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), packedAttention(B(info, 0), N(info, 1), N(info, 2), N(info, 3)));
}

// Arguments: x, y, keep, n, p, seed, offset.
Napi::Value DropoutForward(const Napi::CallbackInfo& info) {
  float *x = F(info, 0), *y = F(info, 1);
  uint8_t* keep = U8(info, 2);
  int64_t n = N(info, 3);
  double p = D(info, 4);
  uint32_t seed = static_cast<uint32_t>(N(info, 5)), offset = static_cast<uint32_t>(N(info, 6));
  dropoutForward(x, y, keep, n, p, seed, offset);
  return info.Env().Undefined();
}

Napi::Value DropoutBackward(const Napi::CallbackInfo& info) {
  float *dy = F(info, 0), *dx = F(info, 1);
  uint8_t* keep = U8(info, 2);
  dropoutBackward(dy, dx, keep, N(info, 3), D(info, 4));
  return info.Env().Undefined();
}

// Arguments: ids, position ids, token types, word, position and token-type tables, out, rows, H.
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  int32_t *ids = I32(info, 0), *pos = I32(info, 1), *type = I32(info, 2);
  float *word = F(info, 3), *pe = F(info, 4), *te = F(info, 5), *out = F(info, 6);
  int64_t rows = N(info, 7), H = N(info, 8);
  guarded(info, [&] {
    embeddingForward(span<const int32_t>(ids, info, 0), span<const int32_t>(pos, info, 1), span<const int32_t>(type, info, 2),
                     span<const float>(word, info, 3), span<const float>(pe, info, 4), span<const float>(te, info, 5),
                     span<float>(out, info, 6), rows, H);
  });
  return info.Env().Undefined();
}

// Arguments: ids, dOut, table, rows, H, the id that gets no gradient.
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  int32_t* ids = I32(info, 0);
  float *dOut = F(info, 1), *table = F(info, 2);
  int64_t rows = N(info, 3), H = N(info, 4), skip = N(info, 5);
  guarded(info, [&] {
    embeddingBackward(span<const int32_t>(ids, info, 0), span<const float>(dOut, info, 1), span<float>(table, info, 2), rows, H,
                      skip);
  });
  return info.Env().Undefined();
}

Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  float* logits = F(info, 0);
  int32_t* labels = I32(info, 1);
  float* probs = F(info, 2);
  return Napi::Number::New(info.Env(), crossEntropyForward(logits, labels, probs, N(info, 3), N(info, 4)));
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  float* probs = F(info, 0);
  int32_t* labels = I32(info, 1);
  float* d = F(info, 2);
  crossEntropyBackward(probs, labels, d, N(info, 3), N(info, 4), D(info, 5));
  return info.Env().Undefined();
}

// Arguments: p, g, m, v, n, lr, beta1, beta2, eps, weight decay, step, gradient scale.
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  float *p = F(info, 0), *g = F(info, 1), *m = F(info, 2), *v = F(info, 3);
  int64_t n = N(info, 4);
  AdamWHyper h;
  h.lr = D(info, 5);
  h.beta1 = D(info, 6);
  h.beta2 = D(info, 7);
  h.eps = D(info, 8);
  h.weightDecay = D(info, 9);
  h.step = D(info, 10);
  h.gradScale = D(info, 11);
  adamw(p, g, m, v, n, h);
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  float* x = F(info, 0);
  return Napi::Number::New(info.Env(), sumSquares(x, N(info, 1)));
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  float* x = F(info, 0);
  scale(x, N(info, 1), D(info, 2));
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ settings, memory

// Arguments: bf16?, threads (0: OpenMP's default).
Napi::Value Configure(const Napi::CallbackInfo& info) {
  const bool bf16 = B(info, 0);
  context(info).configure(bf16, static_cast<int>(N(info, 1)));
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

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const dnnl_version_t* ver = dnnl_version();
  o.Set("onednn", std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." + std::to_string(ver->patch));
  o.Set("threads", omp_get_max_threads());
  o.Set("bf16", context(info).bf16);
  o.Set("bf16Supported", bf16Supported());
  o.Set("attentionTile", static_cast<double>(kAttentionTile));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // One context per addon instance (the main thread's, each worker's), deleted with it.
  env.SetInstanceData(new Context());
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
