#!/bin/sh
# The native kernels without node: build native/test/kernels_test.cc with the kernel files (every source binding.gyp
# lists but the binding) and run it; it checks each kernel on plain arrays against straightforward loops and exits
# non-zero on a mismatch. Objects are rebuilt only when a source, a header or the flags change.
# Usage: sh scripts/test-native.sh (npm run test:native). CXX, CXXFLAGS and OUT (the build folder) may be set, e.g.
# CXXFLAGS="-O1 -g -fsanitize=address" OUT=build/asan/native-test (scripts/asan.sh does).
set -eu
cd "$(dirname "$0")/.."
cxx="${CXX:-g++}"
flags="${CXXFLAGS:--O3} -march=native -fopenmp -fno-math-errno -fno-trapping-math -std=c++17"
out="${OUT:-build/native-test}"
sources="$(grep -o '"native/[A-Za-z0-9_]*\.cc"' binding.gyp | tr -d '"' | grep -v '^native/binding\.cc$')"
mkdir -p "$out"
# objects built with other flags are stale
if [ ! -f "$out/flags" ] || [ "$(cat "$out/flags")" != "$cxx $flags" ]; then rm -f "$out"/*.o "$out/kernels_test"; fi
printf '%s\n' "$cxx $flags" > "$out/flags"
pids=""
for src in $sources native/test/kernels_test.cc; do
  obj="$out/$(basename "$src" .cc).o"
  stale=0
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then stale=1; fi
  for h in native/*.h; do if [ "$h" -nt "$obj" ]; then stale=1; fi; done
  if [ "$stale" = 1 ]; then
    rm -f "$out/kernels_test"
    # shellcheck disable=SC2086
    $cxx $flags -c "$src" -o "$obj" &
    pids="$pids $!"
  fi
done
status=0
for pid in $pids; do wait "$pid" || status=1; done
[ "$status" = 0 ] || { echo "test-native: compilation failed" >&2; exit 1; }
if [ ! -f "$out/kernels_test" ]; then
  objs=""
  for src in $sources native/test/kernels_test.cc; do objs="$objs $out/$(basename "$src" .cc).o"; done
  # shellcheck disable=SC2086
  $cxx $flags $objs -o "$out/kernels_test" -ldnnl
fi
"$out/kernels_test"
