// weitiao native backend: the kernels' context. The addon's mutable state (the bf16 flag, the thread count, the cached
// oneDNN primitives and the scratch buffers) lives in one Context per addon instance (napi instance data, see
// binding.cc), which every kernel that needs it receives by reference; a C++ test makes its own.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

namespace weitiao {

// The CPU engine every primitive is created for and run on: one per process, never changed after it is made (shared by
// every context, as oneDNN allows).
inline dnnl::engine& cpuEngine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// Creating a oneDNN primitive costs far more than running a small one: primitives are cached per shape.
struct CachedMatmul {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

// Run a cached matmul on raw pointers (oneDNN memory objects are cheap views).
inline void runMatmul(const CachedMatmul& mm, const void* a, const void* b, void* c) {
  dnnl::memory am(mm.pd.src_desc(), cpuEngine(), const_cast<void*>(a));
  dnnl::memory bm(mm.pd.weights_desc(), cpuEngine(), const_cast<void*>(b));
  dnnl::memory cm(mm.pd.dst_desc(), cpuEngine(), c);
  dnnl::stream st(cpuEngine());
  mm.prim.execute(st, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  st.wait();
}

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

// A bf16 linear layer's product with its weight packer (see gemm.cc).
struct PackedLinear {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  dnnl::memory::desc wSrc;  // the fp32 weight as this product reads it
  dnnl::reorder pack;       // wSrc → pd.weights_desc(): convert and pack in one pass
  bool ownPacker;           // the layout is BA16a64b2a without padding: packWeight does it 3–10× faster
};
using LinearKey = std::tuple<bool, bool, bool, int64_t, int64_t, int64_t>;  // backward?, accumulate?, bf16 y?, rows, in, out

// bf16 dW = dyᵀ x through oneDNN's inner-product weight-gradient kernel (see gemm.cc).
struct WeightGrad {
  dnnl::inner_product_backward_weights::primitive_desc pd;
  dnnl::inner_product_backward_weights prim;
};
using WeightGradKey = std::tuple<int64_t, int64_t, int64_t>;  // rows, in, out

// bf16 attention's batched per-head products (see attention.cc).
using HeadKey = std::tuple<int, bool, int64_t, int64_t, int64_t, int64_t, int64_t>;  // op, bf16 dst?, B, H, Tq, T, Dh

struct Context {
  // GEMMs (linear layers, attention) in bf16 with fp32 accumulation, instead of fp32.
  bool bf16 = false;
  // OpenMP threads as configured (0: OpenMP's default).
  int threads = 0;

  // Primitive caches, per shape.
  std::map<LinearKey, std::unique_ptr<PackedLinear>> linears;
  std::map<WeightGradKey, std::unique_ptr<WeightGrad>> weightGrads;
  std::map<HeadKey, std::unique_ptr<CachedMatmul>> headMatmuls;

  // Scratch (a context is used by one thread at a time: the addon runs on its JS thread only).
  AlignedBytes packedW;                   // a linear's weight, packed for its bf16 product
  std::vector<uint16_t> a16, c16;         // bf16 copies of GEMM operands: x (or dy) and dy
  std::vector<float> dwScratch, dGelu;    // a bf16 dW to add to the gradient; fp32 dy·gelu'(x)
  std::vector<uint16_t> q16, k16, v16;    // attention's inputs in bf16
  std::vector<uint16_t> p16, d16;         // P' (then dS) and dctx in bf16
  std::vector<float> dp, probs;           // dP'; probabilities not kept for backward
  std::vector<uint8_t> keep;              // a dropout mask not kept for backward

  // Settings: precision, and the OpenMP threads of the calling thread when threads > 0.
  void configure(bool useBf16, int threadCount) {
    bf16 = useBf16;
    threads = threadCount;
    if (threadCount > 0) omp_set_num_threads(threadCount);
  }
};

}  // namespace weitiao
