// The native kernels without node: each called on plain arrays and checked against a straightforward loop (double
// sums, no tricks), as src/backend/ts.ts computes it. Built and run by scripts/test-native.sh; exits non-zero on any
// mismatch, printing each one.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../kernels.h"

using namespace weitiao;

namespace {

int failures = 0, checks = 0;

// A deterministic normal-ish stream (sum of uniforms), so that a failure reproduces.
struct Rand {
  uint32_t s;
  explicit Rand(uint32_t seed) : s(seed) {}
  float uniform() {
    s = s * 1664525u + 1013904223u;
    return static_cast<float>(s >> 8) / 16777216.0f;
  }
  std::vector<float> normal(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = (uniform() + uniform() + uniform() - 1.5f) * 2.0f * scale;
    return v;
  }
};

// Max |got − want| over max |want| (both 0: 0), against tol.
void near(const std::string& name, const float* got, const std::vector<double>& want, double tol) {
  double diff = 0, mag = 0;
  size_t worst = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(d <= diff)) {  // NaN counts as the worst
      diff = d;
      worst = i;
    }
    mag = std::max(mag, std::fabs(want[i]));
  }
  const double rel = mag > 0 ? diff / mag : diff;
  checks++;
  if (!(rel <= tol)) {
    failures++;
    std::printf("FAIL %s: relative error %.3g > %.3g (at %zu: got %.9g, want %.9g)\n", name.c_str(), rel, tol, worst,
                static_cast<double>(got[worst]), want[worst]);
  } else {
    std::printf("ok   %s (%.2g)\n", name.c_str(), rel);
  }
}
void near(const std::string& name, const std::vector<float>& got, const std::vector<double>& want, double tol) {
  near(name, got.data(), want, tol);
}
void expect(const std::string& name, bool ok) {
  checks++;
  if (!ok) failures++;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
}

float bf16Round(float f) { return valueOf(toBf16(f)); }
std::vector<float> bf16Rounded(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); i++) r[i] = bf16Round(v[i]);
  return r;
}

// y = x Wᵀ + b with W [out, in].
std::vector<double> naiveLinear(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                                int64_t rows, int64_t in, int64_t out) {
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < out; o++) {
      double s = b[o];
      for (int64_t i = 0; i < in; i++) s += static_cast<double>(x[r * in + i]) * w[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

void testLinear(Context& ctx, bool bf16, int64_t rows, int64_t in, int64_t out) {
  const std::string tag = std::string(bf16 ? "bf16" : "fp32") + " linear " + std::to_string(rows) + "x" +
                          std::to_string(in) + "x" + std::to_string(out);
  Rand rnd(static_cast<uint32_t>(rows * 131 + in * 7 + out));
  auto x = rnd.normal(rows * in), w = rnd.normal(out * in, 0.3f), b = rnd.normal(out), dy = rnd.normal(rows * out);
  // bf16 GEMMs multiply the bf16-rounded operands exactly and accumulate in fp32: compare with the rounded inputs
  const auto xr = bf16 ? bf16Rounded(x) : x, wr = bf16 ? bf16Rounded(w) : w, dyr = bf16 ? bf16Rounded(dy) : dy;
  const double tol = 1e-5;
  std::vector<float> y(rows * out);
  linearForward(ctx, x.data(), w.data(), b.data(), y.data(), rows, in, out, {nullptr, false}, nullptr);
  near(tag + " forward", y, naiveLinear(xr, wr, b, rows, in, out), tol);

  // backward: dx = dy W, dW (+)= dyᵀ x, db (+)= Σ dy
  std::vector<double> dx(rows * in), dw(out * in), db(out);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < in; i++) {
      double s = 0;
      for (int64_t o = 0; o < out; o++) s += static_cast<double>(dyr[r * out + o]) * wr[o * in + i];
      dx[r * in + i] = s;
    }
  const auto dw0 = rnd.normal(out * in), db0 = rnd.normal(out);
  for (int64_t o = 0; o < out; o++) {
    double sb = 0;
    for (int64_t r = 0; r < rows; r++) sb += dy[r * out + o];
    db[o] = db0[o] + sb;
    for (int64_t i = 0; i < in; i++) {
      double s = 0;
      for (int64_t r = 0; r < rows; r++) s += static_cast<double>(dyr[r * out + o]) * xr[r * in + i];
      dw[o * in + i] = dw0[o * in + i] + s;
    }
  }
  std::vector<float> gdx(rows * in), gdw = dw0, gdb = db0;
  LinearBackwardArgs a;
  a.dy = dy.data();
  a.x = x.data();
  a.w = w.data();
  a.dx = gdx.data();
  a.dw = gdw.data();
  a.db = gdb.data();
  a.rows = rows;
  a.in = in;
  a.out = out;
  linearBackward(ctx, a);
  near(tag + " backward dx", gdx, dx, tol);
  near(tag + " backward dW (accumulated)", gdw, dw, tol);
  near(tag + " backward db (accumulated)", gdb, db, 1e-6);
}

void testPointwise() {
  Rand rnd(5);
  const int64_t n = 70000;  // past the parallel thresholds
  auto x = rnd.normal(n, 3.0f), dy = rnd.normal(n);
  std::vector<float> y(n), dx(n);
  std::vector<double> want(n), wantD(n);
  geluForward(x.data(), y.data(), n, nullptr, nullptr);
  for (int64_t i = 0; i < n; i++) want[i] = 0.5 * x[i] * (1 + std::erf(x[i] / std::sqrt(2.0)));
  near("gelu forward", y, want, 1e-6);
  geluBackward(x.data(), dy.data(), dx.data(), n);
  for (int64_t i = 0; i < n; i++) {
    const double v = x[i], cdf = 0.5 * (1 + std::erf(v / std::sqrt(2.0))), pdf = std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
    wantD[i] = dy[i] * (cdf + v * pdf);
  }
  near("gelu backward", dx, wantD, 1e-6);

  // dropout: the mask is the counter-based stream's draw at offset + i, kept entries scaled by 1/(1 − p)
  const double p = 0.3;
  const uint32_t seed = 1234, offset = 99;
  std::vector<uint8_t> keep(n);
  dropoutForward(x.data(), y.data(), keep.data(), n, p, seed, offset);
  bool maskOk = true;
  int64_t kept = 0;
  for (int64_t i = 0; i < n; i++) {
    const bool k = streamDraw(seed, offset + static_cast<uint32_t>(i)) >= dropThreshold(p);
    maskOk &= keep[i] == (k ? 1 : 0);
    kept += k;
    want[i] = k ? x[i] * static_cast<float>(1 / (1 - p)) : 0;
  }
  expect("dropout mask is the RNG stream's", maskOk);
  expect("dropout keeps about 1 − p", std::fabs(static_cast<double>(kept) / n - (1 - p)) < 0.01);
  near("dropout forward", y, want, 1e-7);

  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += static_cast<double>(x[i]) * x[i];
  expect("sumSquares", std::fabs(sumSquares(x.data(), n) - ss) <= 1e-12 * ss);
}

void testLayerNorm() {
  const int64_t rows = 37, cols = 96;
  const double eps = 1e-12;
  Rand rnd(7);
  auto x = rnd.normal(rows * cols, 2.0f), g = rnd.normal(cols), b = rnd.normal(cols), res = rnd.normal(rows * cols);
  for (int64_t j = 0; j < cols; j++) x[5 * cols + j] += 40.0f;  // a row far from 0
  std::vector<float> y(rows * cols), mean(rows), rstd(rows);
  std::vector<double> want(rows * cols), wantMean(rows), wantRstd(rows);
  auto reference = [&](const std::vector<float>& in) {
    for (int64_t r = 0; r < rows; r++) {
      double mu = 0, var = 0;
      for (int64_t j = 0; j < cols; j++) mu += in[r * cols + j];
      mu /= cols;
      for (int64_t j = 0; j < cols; j++) var += (in[r * cols + j] - mu) * (in[r * cols + j] - mu);
      var /= cols;  // biased, as torch.nn.LayerNorm
      const double rs = 1 / std::sqrt(var + eps);
      wantMean[r] = mu;
      wantRstd[r] = rs;
      for (int64_t j = 0; j < cols; j++) want[r * cols + j] = (in[r * cols + j] - mu) * rs * g[j] + b[j];
    }
  };
  layerNormForward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, cols, eps);
  reference(x);
  near("layerNorm forward y", y, want, 1e-5);
  near("layerNorm forward mean", mean, wantMean, 1e-6);
  near("layerNorm forward rstd", rstd, wantRstd, 1e-6);

  // fused: sum = dropout(x) + residual, y = LayerNorm(sum), with dropoutForward's mask
  const double p = 0.1;
  std::vector<float> dropped(rows * cols), sum(rows * cols);
  std::vector<uint8_t> keep(rows * cols), keepRef(rows * cols);
  dropoutForward(x.data(), dropped.data(), keepRef.data(), rows * cols, p, 3, 17);
  std::vector<float> sumRef(rows * cols);
  for (int64_t i = 0; i < rows * cols; i++) sumRef[i] = dropped[i] + res[i];
  DropoutAddLayerNormArgs a;
  a.x = x.data();
  a.residual = res.data();
  a.gamma = g.data();
  a.beta = b.data();
  a.sum = sum.data();
  a.y = y.data();
  a.mean = mean.data();
  a.rstd = rstd.data();
  a.rows = rows;
  a.cols = cols;
  a.eps = eps;
  a.dropout = true;
  a.p = p;
  a.seed = 3;
  a.offset = 17;
  a.keep = keep.data();
  dropoutAddLayerNorm(a);
  expect("dropout+add+layerNorm: dropoutForward's mask", keep == keepRef);
  near("dropout+add+layerNorm sum", sum, std::vector<double>(sumRef.begin(), sumRef.end()), 0);
  reference(sumRef);
  near("dropout+add+layerNorm y", y, want, 1e-5);
}

// Softmax attention on [B·T, H·D] rows, per (batch, head), masked keys −∞: probabilities and context, as ts.ts.
// roundP: the context is made from the probabilities rounded to bf16 (and rounded to fp32 first), as bf16 GEMMs read them.
void naiveAttention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                    const std::vector<float>& mask, int64_t B, int64_t T, int64_t H, int64_t D, std::vector<double>& probs,
                    std::vector<double>& ctx, bool roundP) {
  const int64_t W = H * D;
  probs.assign(B * H * T * T, 0.0);
  ctx.assign(B * T * W, 0.0);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < T; i++) {
        double* pr = &probs[((b * H + h) * T + i) * T];
        double mx = -INFINITY;
        for (int64_t j = 0; j < T; j++) {
          double s = 0;
          for (int64_t d = 0; d < D; d++) s += static_cast<double>(q[(b * T + i) * W + h * D + d]) * k[(b * T + j) * W + h * D + d];
          pr[j] = mask[b * T + j] == -INFINITY ? -INFINITY : s / std::sqrt(static_cast<double>(D)) + mask[b * T + j];
          mx = std::max(mx, pr[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < T; j++) sum += pr[j] = pr[j] == -INFINITY ? 0 : std::exp(pr[j] - mx);
        for (int64_t j = 0; j < T; j++) pr[j] /= sum;
        for (int64_t d = 0; d < D; d++) {
          double s = 0;
          for (int64_t j = 0; j < T; j++)
            s += (roundP ? bf16Round(static_cast<float>(pr[j])) : pr[j]) * v[(b * T + j) * W + h * D + d];
          ctx[(b * T + i) * W + h * D + d] = s;
        }
      }
}

void testAttention(Context& ctx, bool bf16, int64_t B, int64_t T, int64_t H, int64_t D, bool withLengths) {
  const std::string tag = std::string(bf16 ? "bf16" : "fp32") + " attention B" + std::to_string(B) + " T" +
                          std::to_string(T) + " H" + std::to_string(H) + " D" + std::to_string(D) +
                          (withLengths ? " with lengths" : "");
  const int64_t W = H * D, n = B * T * W;
  Rand rnd(static_cast<uint32_t>(T * 31 + D));
  auto q = rnd.normal(n), k = rnd.normal(n), v = rnd.normal(n), dctx = rnd.normal(n);
  std::vector<int32_t> lengths(B);
  std::vector<float> mask(B * T, 0.0f);
  for (int64_t b = 0; b < B; b++) {
    lengths[b] = static_cast<int32_t>(withLengths ? std::max<int64_t>(1, T - 5 * b - 3) : T);
    for (int64_t j = withLengths ? lengths[b] : T - 2; j < T; j++) mask[b * T + j] = -INFINITY;  // the last keys masked
  }
  const auto qr = bf16 ? bf16Rounded(q) : q, kr = bf16 ? bf16Rounded(k) : k, vr = bf16 ? bf16Rounded(v) : v;
  std::vector<double> wantP, wantCtx;
  naiveAttention(qr, kr, vr, mask, B, T, H, D, wantP, wantCtx, bf16);
  std::vector<float> probs(B * H * T * T), out(n);
  AttentionForwardArgs a;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.mask = mask.data();
  a.batch = B;
  a.T = T;
  a.heads = H;
  a.headDim = D;
  a.Tq = T;
  a.probs = probs.data();
  a.ctx = out.data();
  a.lengths = withLengths ? lengths.data() : nullptr;
  attentionForward(ctx, a);
  // with lengths, only rows and keys below each length are computed
  auto computed = [&](int64_t b, int64_t i) { return !withLengths || i < lengths[b]; };
  std::vector<float> gotP, gotCtx;
  std::vector<double> wP, wCtx;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++)
          if (computed(b, i) && computed(b, j)) {
            gotP.push_back(probs[((b * H + h) * T + i) * T + j]);
            wP.push_back(wantP[((b * H + h) * T + i) * T + j]);
          }
  for (int64_t r = 0; r < B * T; r++)
    if (computed(r / T, r % T))
      for (int64_t c = 0; c < W; c++) {
        gotCtx.push_back(out[r * W + c]);
        wCtx.push_back(wantCtx[r * W + c]);
      }
  bool maskedZero = true;
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = 0; j < T; j++)
        if (computed(b, i) && computed(b, j) && mask[b * T + j] == -INFINITY) maskedZero &= probs[(b * H * T + i) * T + j] == 0.0f;
  expect(tag + ": masked keys get probability 0", maskedZero);
  near(tag + " probs", gotP, wP, 1e-5);
  // bf16: P is rounded to bf16 before P·V (as the reference does; a probability a rounding step away may round the
  // other way, hence the looser bound)
  near(tag + " ctx", gotCtx, wCtx, bf16 ? 1e-4 : 1e-5);

  if (bf16 || withLengths) return;
  // fp32 backward against the same loops: dV = Pᵀ dctx, dP = dctx Vᵀ, dS = P ⊙ (dP − Σ dP·P) / √D, dQ = dS K, dK = dSᵀ Q
  std::vector<double> wdq(n, 0.0), wdk(n, 0.0), wdv(n, 0.0);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const double* P = &wantP[(b * H + h) * T * T];
      auto at = [&](int64_t row, int64_t d) { return (b * T + row) * W + h * D + d; };
      for (int64_t j = 0; j < T; j++)
        for (int64_t d = 0; d < D; d++)
          for (int64_t i = 0; i < T; i++) wdv[at(j, d)] += P[i * T + j] * dctx[at(i, d)];
      for (int64_t i = 0; i < T; i++) {
        std::vector<double> dp(T);
        double dot = 0;
        for (int64_t j = 0; j < T; j++) {
          for (int64_t d = 0; d < D; d++) dp[j] += static_cast<double>(dctx[at(i, d)]) * v[at(j, d)];
          dot += dp[j] * P[i * T + j];
        }
        for (int64_t j = 0; j < T; j++) {
          const double ds = P[i * T + j] * (dp[j] - dot) / std::sqrt(static_cast<double>(D));
          for (int64_t d = 0; d < D; d++) {
            wdq[at(i, d)] += ds * k[at(j, d)];
            wdk[at(j, d)] += ds * q[at(i, d)];
          }
        }
      }
    }
  std::vector<float> dq(n), dk(n), dv(n);
  AttentionBackwardArgs g;
  g.q = q.data();
  g.k = k.data();
  g.v = v.data();
  g.probs = probs.data();
  g.dctx = dctx.data();
  g.batch = B;
  g.T = T;
  g.heads = H;
  g.headDim = D;
  g.Tq = T;
  g.dq = dq.data();
  g.dk = dk.data();
  g.dv = dv.data();
  attentionBackward(ctx, g);
  near(tag + " backward dq", dq, wdq, 1e-5);
  near(tag + " backward dk", dk, wdk, 1e-5);
  near(tag + " backward dv", dv, wdv, 1e-5);
}

void testCrossEntropy() {
  const int64_t rows = 6, C = 5;
  Rand rnd(11);
  auto logits = rnd.normal(rows * C, 4.0f);
  const std::vector<int32_t> labels{0, 4, -100, 2, 1, 3};
  std::vector<float> probs(rows * C), d(rows * C);
  std::vector<double> wantP(rows * C), wantD(rows * C);
  double wantLoss = 0;
  for (int64_t r = 0; r < rows; r++) {
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < C; c++) mx = std::max(mx, static_cast<double>(logits[r * C + c]));
    for (int64_t c = 0; c < C; c++) sum += std::exp(logits[r * C + c] - mx);
    for (int64_t c = 0; c < C; c++) wantP[r * C + c] = std::exp(logits[r * C + c] - mx) / sum;
    if (labels[r] >= 0) wantLoss += -std::log(wantP[r * C + labels[r]]);
    for (int64_t c = 0; c < C; c++)
      wantD[r * C + c] = labels[r] < 0 ? 0 : (static_cast<float>(wantP[r * C + c]) - (c == labels[r] ? 1.0 : 0.0)) * 0.2;
  }
  const double loss = crossEntropyForward(logits.data(), labels.data(), probs.data(), rows, C);
  expect("crossEntropy loss (" + std::to_string(loss) + " vs " + std::to_string(wantLoss) + ")",
         std::fabs(loss - wantLoss) <= 1e-9 * std::fabs(wantLoss));
  near("crossEntropy probs", probs, wantP, 1e-6);
  crossEntropyBackward(probs.data(), labels.data(), d.data(), rows, C, 0.2);
  near("crossEntropy backward", d, wantD, 1e-6);
}

void testAdamW() {
  const int64_t n = 1000;
  Rand rnd(13);
  auto p = rnd.normal(n), g = rnd.normal(n), m = rnd.normal(n, 0.1f), v = rnd.normal(n, 0.1f);
  for (auto& x : v) x = x * x;
  AdamWHyper h;
  h.lr = 1e-3;
  h.beta1 = 0.9;
  h.beta2 = 0.999;
  h.eps = 1e-8;
  h.weightDecay = 0.01;
  h.step = 3;
  h.gradScale = 0.5;
  // torch.optim.AdamW: p ← p·(1 − lr·wd); m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²;
  // p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε), with g scaled by gradScale
  std::vector<double> wp(n), wm(n), wv(n);
  for (int64_t i = 0; i < n; i++) {
    const double gi = g[i] * h.gradScale;
    wm[i] = h.beta1 * m[i] + (1 - h.beta1) * gi;
    wv[i] = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
    const double bc1 = 1 - std::pow(h.beta1, h.step), bc2 = 1 - std::pow(h.beta2, h.step);
    wp[i] = p[i] * (1 - h.lr * h.weightDecay) - h.lr / bc1 * wm[i] / (std::sqrt(wv[i]) / std::sqrt(bc2) + h.eps);
  }
  adamw(p.data(), g.data(), m.data(), v.data(), n, h);
  near("adamw m", m, wm, 1e-6);
  near("adamw v", v, wv, 1e-6);
  near("adamw params", p, wp, 1e-6);
}

void testEmbedding() {
  const int64_t rows = 4, H = 3;
  const std::vector<int32_t> ids{2, 0, 4, 2}, pos{0, 1, 2, 3}, type{0, 0, 1, 1};
  Rand rnd(17);
  auto word = rnd.normal(5 * H), pe = rnd.normal(4 * H), te = rnd.normal(2 * H);
  std::vector<float> out(rows * H);
  std::vector<double> want(rows * H);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < H; j++)
      want[r * H + j] = static_cast<double>(word[ids[r] * H + j] + pe[pos[r] * H + j]) + te[type[r] * H + j];
  embeddingForward({ids.data(), ids.size()}, {pos.data(), pos.size()}, {type.data(), type.size()}, {word.data(), word.size()},
                   {pe.data(), pe.size()}, {te.data(), te.size()}, {out.data(), out.size()}, rows, H);
  near("embedding forward", out, want, 1e-7);
  const std::vector<int32_t> bad{2, 0, 5, 2};  // 5 is past the word table's 5 rows
  bool threw = false;
  try {
    embeddingForward({bad.data(), bad.size()}, {pos.data(), pos.size()}, {type.data(), type.size()},
                     {word.data(), word.size()}, {pe.data(), pe.size()}, {te.data(), te.size()}, {out.data(), out.size()},
                     rows, H);
  } catch (const KernelError& e) {
    threw = e.range && std::string(e.what()).find("id 5 at row 2 is outside the word table (5 rows)") != std::string::npos;
  }
  expect("embedding: an id outside its table is a range error", threw);
}

}  // namespace

int main() {
  Context ctx;
  ctx.configure(false, 0);
  testLinear(ctx, false, 13, 24, 40);
  testLinear(ctx, false, 64, 64, 128);
  testPointwise();
  testLayerNorm();
  testAttention(ctx, false, 2, 8, 2, 4, false);
  testAttention(ctx, false, 3, 12, 2, 8, true);
  testCrossEntropy();
  testAdamW();
  testEmbedding();
  if (bf16Supported()) {
    ctx.configure(true, 0);
    testLinear(ctx, true, 13, 24, 40);     // oneDNN's reorder packs the weight
    testLinear(ctx, true, 64, 64, 128);    // the own packers (K % 32 = 0, N % 64 = 0), where built
    testAttention(ctx, true, 2, 8, 2, 4, false);  // batched products
    if (packedAttention(true, 32, 32, 16)) testAttention(ctx, true, 3, 32, 2, 16, true);  // per-head AVX512-BF16 tiles
    else std::printf("skip bf16 per-head attention: built without AVX512-BF16\n");
  } else {
    std::printf("skip bf16 kernels: oneDNN has no bf16 GEMMs on this CPU\n");
  }
  std::printf("%d of %d checks failed\n", failures, checks);
  return failures ? 1 : 0;
}
