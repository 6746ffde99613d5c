#!/bin/sh
# The native backend under AddressSanitizer: build the addon with -fsanitize=address into build/asan/ (the sources
# binding.gyp lists), run the C++ kernel test built the same way (scripts/test-native.sh), then the test files that
# drive the addon (kernel parity, model forward/backward, packing, the hostile-input and fuzz tests, whose CLI runs
# inherit the sanitizer) with libasan preloaded into node. Any out-of-bounds access aborts the run with ASan's report.
# Usage: npm run build && sh scripts/asan.sh
set -eu
cd "$(dirname "$0")/.."
node_inc="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node"
napi_inc="$(node -p "require('node-addon-api').include_dir")"
sources="$(grep -o '"native/[A-Za-z0-9_]*\.cc"' binding.gyp | tr -d '"')"
mkdir -p build/asan
# shellcheck disable=SC2086
g++ -O1 -g -fsanitize=address -fno-omit-frame-pointer -shared -fPIC -march=native -fopenmp -std=c++17 \
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -I"$node_inc" -I"$napi_inc" $sources -o build/asan/weitiao.node -ldnnl
echo "asan: addon built (build/asan/weitiao.node)"
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
CXXFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer" OUT=build/asan/native-test sh scripts/test-native.sh
echo "asan: C++ kernel test clean"
LD_PRELOAD="$(g++ -print-file-name=libasan.so)" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
WEITIAO_NATIVE_ADDON="$PWD/build/asan/weitiao.node" WEITIAO_REQUIRE_NATIVE=1 WEITIAO_SKIP_KERNEL_TEST=1 \
  node --test dist/test/backend/ dist/test/model/ dist/test/cli/hostile.test.js dist/test/io/fuzz.test.js
echo "asan: no errors"
