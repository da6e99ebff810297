#!/usr/bin/env bash
# aot_consumer.sh BUILD_DIR EXAMPLE_DIR CMAKE NINJA  (ctest aot.consumer)
#
# 1. cmake --install BUILD_DIR into a temporary prefix; the installed attnc
#    and attn-run run from there.
# 2. A copy of EXAMPLE_DIR (examples/aot-consumer) is configured with
#    find_package(attnc) from that prefix only, built with Ninja (two attnc
#    commands, both the prefix's attnc) and run: its float64 checks pass.
# 3. A no-op build does nothing; touching paged_i8.mlir makes Ninja plan
#    (-n) and run exactly one attnc command, paged_i8's.
# 4. gqa_prefill.mlir's mask is changed from causal to none: only its attnc
#    reruns, and the consumer must now exit 1 with FAIL (its check is real).
# The work directory is removed on success and kept (path printed) on failure.
set -euo pipefail
build=$1 example=$2 cmake=$3 ninja=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/attnc-aot.XXXXXX")
trap 'rc=$?; [ $rc -eq 0 ] || echo "aot: FAILED; logs and trees kept in $work" >&2' EXIT
fail() {
  echo "aot: FAIL: $*" >&2
  exit 1
}
step() { echo "aot: $*"; }
# The attnc commands a Ninja log ran or planned ("[i/n] attnc X.mlir -> ...").
attnc_lines() { grep -E '^\[[0-9]+/[0-9]+\] attnc ' "$1" || true; }
expect_only() { # LOG FILE.mlir: exactly one attnc command, for FILE.mlir
  local lines
  lines=$(attnc_lines "$1")
  [ "$(grep -c . <<<"$lines")" -eq 1 ] ||
    fail "expected exactly one attnc command ($2) in $1, got:"$'\n'"$lines"
  grep -q "attnc $2 " <<<"$lines" ||
    fail "the one attnc command in $1 is not $2's: $lines"
}

prefix=$work/prefix
step "install $build into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; fail "cmake --install $build failed"; }
for f in bin/attnc bin/attn-run bin/attn-opt lib/libattnrt.so \
  include/attnrt/attnrt.h lib/cmake/attnc/attncConfig.cmake \
  lib/cmake/attnc/attncConfigVersion.cmake lib/cmake/attnc/attncTargets.cmake \
  lib/cmake/attnc/AttncAddKernels.cmake; do
  [ -e "$prefix/$f" ] || fail "the install lacks $f"
done
"$prefix/bin/attnc" --help >/dev/null || fail "installed attnc does not run"
"$prefix/bin/attn-opt" --help >/dev/null || fail "installed attn-opt does not run"
# attn-run needs the installed libattnrt (RPATH $ORIGIN/../lib).
"$prefix/bin/attn-run" --help >/dev/null 2>&1 ||
  fail "installed attn-run does not run"
# (No `| grep -q` under pipefail: grep's early exit can fail the writer.)
libs=$(ldd "$prefix/bin/attn-run")
[[ $libs == *"$prefix/bin/../lib/libattnrt.so"* ]] ||
  fail "installed attn-run does not load the prefix's libattnrt: $libs"

src=$work/src bld=$work/build
cp -r "$example" "$src"
rm -rf "$src/build"
step "configure and build the consumer"
"$cmake" -G Ninja -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_MAKE_PROGRAM="$ninja" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; fail "configuring the consumer failed"; }
"$ninja" -C "$bld" -j2 >"$work/build1.log" 2>&1 ||
  { cat "$work/build1.log"; fail "building the consumer failed"; }
cat "$work/build1.log"
[ "$(attnc_lines "$work/build1.log" | wc -l)" -eq 2 ] ||
  fail "the first build should run attnc twice"
grep -q "COMMAND = .*$prefix/bin/attnc .*gqa_prefill.mlir" "$bld/build.ninja" ||
  fail "the consumer does not run the installed attnc ($prefix/bin/attnc)"
"$bld/aot-consumer" || fail "aot-consumer failed on the original kernels"

step "no-op build"
"$ninja" -C "$bld" -n >"$work/noop.log"
grep -q "no work to do" "$work/noop.log" ||
  { cat "$work/noop.log"; fail "a second build should do nothing"; }

step "touch paged_i8.mlir: only its attnc reruns"
touch "$src/paged_i8.mlir"
"$ninja" -C "$bld" -n -d explain >"$work/plan.log" 2>&1
cat "$work/plan.log"
expect_only "$work/plan.log" paged_i8.mlir
"$ninja" -C "$bld" -j2 >"$work/build2.log" 2>&1 ||
  { cat "$work/build2.log"; fail "rebuild failed"; }
expect_only "$work/build2.log" paged_i8.mlir
"$bld/aot-consumer" >/dev/null || fail "aot-consumer failed after the rebuild"

step "a wrong kernel (gqa_prefill without its causal mask) must fail"
sed -i 's/{mask = #attn.mask<causal>}/{mask = #attn.mask<none>}/' \
  "$src/gqa_prefill.mlir"
grep -q 'attn.mask<none>' "$src/gqa_prefill.mlir" ||
  fail "could not edit gqa_prefill.mlir's mask"
"$ninja" -C "$bld" -j2 >"$work/build3.log" 2>&1 ||
  { cat "$work/build3.log"; fail "rebuild with the wrong mask failed"; }
expect_only "$work/build3.log" gqa_prefill.mlir
rc=0
"$bld/aot-consumer" >"$work/wrong.log" 2>&1 || rc=$?
cat "$work/wrong.log"
[ $rc -eq 1 ] || fail "aot-consumer exited $rc on a wrong kernel; expected 1"
grep -q "gqa_prefill .* FAIL" "$work/wrong.log" ||
  fail "aot-consumer did not report the wrong prefill as FAIL"

rm -rf "$work"
step "PASS"
