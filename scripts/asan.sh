#!/bin/sh
# The native backend under AddressSanitizer: build the addon with -fsanitize=address into build/asan/, then run the
# test files that drive it (kernel parity, model forward/backward, packing, the hostile-input and fuzz tests, whose
# CLI runs inherit the sanitizer) with libasan preloaded into node. Any out-of-bounds access aborts the run with
# ASan's report. Usage: npm run build && sh scripts/asan.sh
set -eu
cd "$(dirname "$0")/.."
node_inc="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node"
napi_inc="$(node -p "require('node-addon-api').include_dir")"
mkdir -p build/asan
g++ -O1 -g -fsanitize=address -fno-omit-frame-pointer -shared -fPIC -march=native -fopenmp -std=c++17 \
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -I"$node_inc" -I"$napi_inc" native/weitiao.cc -o build/asan/weitiao.node -ldnnl
echo "asan: addon built (build/asan/weitiao.node)"
LD_PRELOAD="$(g++ -print-file-name=libasan.so)" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
WEITIAO_NATIVE_ADDON="$PWD/build/asan/weitiao.node" WEITIAO_REQUIRE_NATIVE=1 \
  node --test dist/test/backend/ dist/test/model/ dist/test/cli/hostile.test.js dist/test/io/fuzz.test.js
echo "asan: no errors"
