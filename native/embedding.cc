// Embedding gathers (forward) and scatter-adds (backward), every id checked against its table first.
#include <omp.h>

#include <climits>
#include <string>

#include "kernels.h"

namespace weitiao {
namespace {

// Gathers check every id against its table's rows (the typed array's length / H) before touching memory: a config
// smaller than the tokenizer must be an error, never a read or write outside the table (the model checks first).
void checkIds(Span<const int32_t> idArray, size_t tableLength, int64_t rows, int64_t H, int64_t skip, const char* what) {
  if (H <= 0 || rows < 0) throw KernelError("native backend: embedding sizes must be positive", true);
  const int32_t* ids = idArray.data;
  int64_t limit = static_cast<int64_t>(tableLength) / H;
  if (idArray.length < static_cast<size_t>(rows)) {
    throw KernelError("native backend: fewer ids than rows", true);
  }
  for (int64_t r = 0; r < rows; r++) {
    if (ids[r] == skip) continue;
    if (ids[r] < 0 || ids[r] >= limit) {
      throw KernelError(std::string("native backend: id ") + std::to_string(ids[r]) + " at row " + std::to_string(r) +
                            " is outside the " + what + " table (" + std::to_string(limit) + " rows)",
                        true);
    }
  }
}

}  // namespace

void embeddingForward(Span<const int32_t> idArray, Span<const int32_t> posArray, Span<const int32_t> typeArray,
                      Span<const float> wordTable, Span<const float> posTable, Span<const float> typeTable,
                      Span<float> outArray, int64_t rows, int64_t H) {
  checkIds(idArray, wordTable.length, rows, H, INT64_MIN, "word");
  checkIds(posArray, posTable.length, rows, H, INT64_MIN, "position");
  checkIds(typeArray, typeTable.length, rows, H, INT64_MIN, "token type");
  if (outArray.length < static_cast<size_t>(rows * H)) {
    throw KernelError("native backend: embedding output too small", true);
  }
  const int32_t *ids = idArray.data, *pos = posArray.data, *type = typeArray.data;
  const float *word = wordTable.data, *pe = posTable.data, *te = typeTable.data;
  float* out = outArray.data;
#pragma omp parallel for schedule(static) if (rows * H > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const float *w = word + static_cast<int64_t>(ids[r]) * H, *p = pe + static_cast<int64_t>(pos[r]) * H,
                *t = te + static_cast<int64_t>(type[r]) * H;
    float* o = out + r * H;
    for (int64_t j = 0; j < H; j++) o[j] = w[j] + p[j] + t[j];
  }
}

// Scatter-add by rows in input order (serial per row, parallel over columns: no races, deterministic).
void embeddingBackward(Span<const int32_t> idArray, Span<const float> dOutArray, Span<float> tableArray, int64_t rows,
                       int64_t H, int64_t skip) {
  checkIds(idArray, tableArray.length, rows, H, skip, "embedding gradient");
  if (dOutArray.length < static_cast<size_t>(rows * H)) {
    throw KernelError("native backend: embedding gradient input too small", true);
  }
  const int32_t* ids = idArray.data;
  const float* dOut = dOutArray.data;
  float* table = tableArray.data;
  for (int64_t r = 0; r < rows; r++) {
    if (ids[r] == skip) continue;
    float* t = table + static_cast<int64_t>(ids[r]) * H;
    const float* d = dOut + r * H;
    for (int64_t j = 0; j < H; j++) t[j] += d[j];
  }
}

}  // namespace weitiao
