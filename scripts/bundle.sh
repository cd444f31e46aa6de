#!/usr/bin/env bash
# Builds everything a GPU host needs into .device-bundle/ (git-ignored), on a machine with Rust
# and no GPU. The GPU host then needs no Rust: only a driver, and Python + PyTorch for the peers.
#
#   bash scripts/bundle.sh                    # → .device-bundle/
#   bash .device-bundle/run.sh [results-dir]  # on the GPU host (default ./results)
#
# With the device tool: carry [".device-bundle"], command `bash .device-bundle/run.sh "$OUT"`
# (results come back from $OUT; run.sh keeps to 5 files and, by default, to 9 minutes: the
# GPU tests, the whole grid for samplex, compute-sanitizer on every kernel once, FlashInfer,
# then PyTorch, each as far as time allows).
#
# 1. Installs the pinned nvcc (scripts/install-cuda.sh) and builds with it, so every binary
#    embeds the fatbin (no NVRTC needed on the GPU host).
# 2. One `cargo test --release --no-run --lib --tests --benches`, whose JSON messages name the
#    executables. One build, not `cargo test --no-run` then `cargo bench --no-run`: a second
#    build reruns build.rs, and while kernels/ is being edited the test and bench binaries
#    could embed different kernels. A harness = false bench is the same binary either way
#    (`--bench` on its command line is what makes it measure).
#    Packs them, debug info stripped, as bin/tests/<name> and bin/benches/<name> into
#    bin.tar.xz (bin.tar.gz without xz). Each binary embeds the same fatbin; xz -9's 64 MiB
#    window packs the copies together, so the bundle stays far below the 64 MiB a run carries.
# 3. Copies scripts/peers.py, scripts/bok_torch.py, scripts/report.py and
#    scripts/flashinfer_kernels.py, and builds FlashInfer's kernels into
#    libsamplex_flashinfer.so (scripts/flashinfer/build.sh; SAMPLEX_BUNDLE_FLASHINFER=0 skips
#    it); writes GIT (the commit, "-dirty" when the tree differs from it) and run.sh (see its
#    header).
#
#   CARGO_TARGET_DIR   honoured by cargo (default target/)
#   SAMPLEX_CUDA_ARCHS passed through to build.rs (default there: 80,86,89,90)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bundle="$root/.device-bundle"

echo "== nvcc"
venv="$(bash scripts/install-cuda.sh)"
export SAMPLEX_NVCC="$venv/cu13/bin/nvcc"
"$SAMPLEX_NVCC" --version | tail -n 1

# From cargo's JSON messages: "<kind> <name> <path>" per executable of the wanted sort (each
# path once), or, for "fatbin", the samplex build script's $OUT_DIR/samplex.fatbin.
artifacts() {
  python3 -c '
import json, os, sys
want, seen = sys.argv[1], set()
for raw in sys.stdin:
    try:
        m = json.loads(raw)
    except ValueError:
        continue
    if want == "fatbin":
        if m.get("reason") == "build-script-executed" and "samplex" in m.get("package_id", ""):
            print(os.path.join(m["out_dir"], "samplex.fatbin"))
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    kind = m["target"]["kind"][0]
    if (kind == "bench") != (want == "benches") or m["executable"] in seen:
        continue
    seen.add(m["executable"])
    print(kind, m["target"]["name"], m["executable"])
' "$1"
}

echo "== build (release, fatbin)"
# json-render-diagnostics: warnings (register spills among them) still reach the terminal.
messages="$(cargo test --release --no-run --lib --tests --benches \
  --message-format=json-render-diagnostics)"
tests="$(artifacts tests <<<"$messages")"
benches="$(artifacts benches <<<"$messages")"
[ -n "$tests" ] || { echo "bundle: no test executables found" >&2; exit 1; }
[ -n "$benches" ] || { echo "bundle: no bench executables found" >&2; exit 1; }

fatbin="$(artifacts fatbin <<<"$messages" | tail -n 1)"
if [ -z "$fatbin" ] || [ ! -s "$fatbin" ]; then
  echo "bundle: the fatbin is missing or empty (${fatbin:-no build script output}): nvcc did not build the kernels" >&2
  exit 1
fi
echo "fatbin: $(stat -c %s "$fatbin") bytes ($fatbin)"

echo "== bundle"
rm -rf "$bundle"
mkdir -p "$bundle/bin/tests" "$bundle/bin/benches"
copy() { # kind name path dir
  local dest="$4/$2"
  [ "$1" = lib ] && dest="$4/lib-$2"
  cp "$3" "$dest"
  if command -v strip >/dev/null; then strip --strip-debug "$dest"; fi
  echo "  $(basename "$4")/$(basename "$dest")  $(du -h "$dest" | cut -f1)"
}
while read -r kind name path; do copy "$kind" "$name" "$path" "$bundle/bin/tests"; done <<<"$tests"
while read -r kind name path; do copy "$kind" "$name" "$path" "$bundle/bin/benches"; done <<<"$benches"

for s in peers.py report.py bok_torch.py flashinfer_kernels.py; do
  if [ -f "scripts/$s" ]; then
    cp "scripts/$s" "$bundle/$s"
  else
    echo "  (scripts/$s is missing: its part of run.sh will be skipped)"
  fi
done

# FlashInfer's kernels for the peers (scripts/flashinfer/build.sh; ~45 s of nvcc, and a
# ~100 MB wheel download the first time), packed with the binaries. Optional: without it the
# FlashInfer column is empty.
if [ "${SAMPLEX_BUNDLE_FLASHINFER:-1}" != 0 ]; then
  if ! bash scripts/flashinfer/build.sh "$bundle/bin/libsamplex_flashinfer.so"; then
    echo "  (FlashInfer's kernels did not build: the bundle has no FlashInfer column)" >&2
    rm -f "$bundle/bin/libsamplex_flashinfer.so"
  fi
fi

if command -v xz >/dev/null; then
  # -9: a 64 MiB window, wide enough to share the fatbin between binaries.
  tar -cf - -C "$bundle" bin | xz -9 -T1 >"$bundle/bin.tar.xz"
else
  tar -czf "$bundle/bin.tar.gz" -C "$bundle" bin
fi
rm -rf "$bundle/bin"

git_rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "$git_rev" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  git_rev="$git_rev-dirty"
fi
echo "$git_rev" >"$bundle/GIT"

cat >"$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the samplex bundle on a GPU host (no Rust needed). Made by scripts/bundle.sh.
#
#   bash run.sh [results-dir]        (default ./results)
#
# Stages, in this order (SAMPLEX_STAGES picks some, space- or comma-separated; default
# "tests bench sanitizer peers report"):
#   tests      the test binaries named by SAMPLEX_TESTS (globs; default "gpu_* nvrtc": the
#              CPU-only tests are CI's), within SAMPLEX_TESTS_BUDGET seconds in all (default
#              240, so that the bench and the peers keep their time); PASS/FAIL and libtest's
#              result line into summary.txt
#   bench      bin/benches/sampling --bench → <results>/<YYYY-MM-DD>-<gpu>.jsonl
#   sanitizer  compute-sanitizer (when it exists; refused on some hosts: "Device not
#              supported") with each of SAMPLEX_SANITIZE_TOOLS (default "memcheck racecheck
#              synccheck") on each of SAMPLEX_SANITIZE (default "smoke gpu_edits
#              gpu_softmax:token_log_probs gpu_softmax:several_draws_per_row_are
#              gpu_speculative:verification_agrees gpu_speculative:verification_on_logits
#              gpu_speculative:packed":
#              the bench binary's smoke run, every sampling kernel and split path once, the
#              logit edits' tests, token_log_probs' tests, sample_from_probs_n's, verify_draft's
#              and verify_draft_logits' bit-for-bit tests, the packed draft layout's (its
#              clamped offsets too), a second or two each; test-binary globs such as "gpu_topk" reach more shapes, slowly, and
#              BINARY:FILTER runs only the tests matching FILTER), within
#              SAMPLEX_SANITIZE_BUDGET seconds (default 150)
#   peers      per peer (FlashInfer, then PyTorch), one process each: python3 peers.py --check
#              (each op once, checked), then, if it passed, the timed run → the same file;
#              first the ops on logits (--only logits), then, in processes of their own, the
#              ops on probabilities (--only probs: sample_from_probs, sample_from_probs_n,
#              verify_draft; timed within SAMPLEX_PROBS_TIMEOUT seconds, default 90), so that
#              they cannot cost the logit comparison its points. FlashInfer: its package if
#              importable, else its kernels from libsamplex_flashinfer.so (flashinfer_kernels.py)
#   report     python3 report.py → BENCHMARKS.md (+ benchmarks.png with matplotlib)
#
# The grid is BENCH.md's whole grid unless SAMPLEX_BENCH_QUICK=1 (the small subset), without
# criterion's own sampling unless SAMPLEX_BENCH_CRITERION=1 (it adds ~0.1 s a point and only
# feeds a console report; the result lines are the same). Each point's line is written as soon
# as it is timed, so a stage cut by the budget keeps what it timed. Passed through:
# SAMPLEX_BENCH_OPS, SAMPLEX_BENCH_OUT, SAMPLEX_GIT.
# Time: SAMPLEX_BUDGET seconds for the whole run (default 540, to end inside a 10-minute
# command with the logs packed); each step gets what is left of it, capped by SAMPLEX_TIMEOUT
# per test binary or sanitizer run (default 300) and SAMPLEX_BENCH_TIMEOUT for the bench and
# for each peer's timed run (default 240: the bench cannot leave the peers without time; the
# full grid's samplex points are mostly fixed costs, about 3400 of them). A step with no time
# left is skipped and counts as a failure.
#
# The results dir ends with at most five files: summary.txt, the .jsonl, logs.tar.gz (every
# log, each cut to its first and last 2 MiB), BENCHMARKS.md and benchmarks.png.
# Exit status: 0 when every stage that ran passed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
unpacked="$(mktemp -d)"
trap 'rm -rf "$unpacked"' EXIT
pack="$(ls "$here"/bin.tar.* | head -n 1)"
# tar -J needs xz on this host; Python's tarfile reads xz too.
tar -xf "$pack" -C "$unpacked" 2>/dev/null ||
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$pack" "$unpacked" ||
  { echo "run.sh: cannot unpack $pack" >&2; exit 1; }
bin="$unpacked/bin"
# FlashInfer's kernels, for flashinfer_kernels.py (when the bundle was built with them).
[ -f "$bin/libsamplex_flashinfer.so" ] && export SAMPLEX_FLASHINFER_LIB="$bin/libsamplex_flashinfer.so"
results="${1:-./results}"
mkdir -p "$results" && results="$(cd "$results" && pwd)"
logs="$results/logs"
mkdir -p "$logs"
stages=" $(echo "${SAMPLEX_STAGES:-tests bench sanitizer peers report}" | tr ',' ' ') "
to="${SAMPLEX_TIMEOUT:-300}"
bench_to="${SAMPLEX_BENCH_TIMEOUT:-240}"
probs_to="${SAMPLEX_PROBS_TIMEOUT:-90}"
budget="${SAMPLEX_BUDGET:-540}"
summary="$results/summary.txt"
failed=0

export SAMPLEX_GIT="${SAMPLEX_GIT:-$(cat "$here/GIT" 2>/dev/null || echo unknown)}"
export SAMPLEX_REQUIRE_FATBIN=1 # the bundle is built with nvcc: tests check it is embedded
export SAMPLEX_BENCH_QUICK="${SAMPLEX_BENCH_QUICK-0}"
export SAMPLEX_BENCH_CRITERION="${SAMPLEX_BENCH_CRITERION-0}"
export PYTHONUNBUFFERED=1 # a peer run cut by its timeout keeps its log

say() { echo "$*" | tee -a "$summary"; }
want() { [[ "$stages" == *" $1 "* ]]; }
# Seconds a step may take: its cap, or what the budget has left after keeping 30 s for the
# report and the packing of the logs; 0 when nothing is left.
limit() {
  local left=$((budget - SECONDS - 30))
  [ "$left" -gt 0 ] || left=0
  echo $(($1 < left ? $1 : left))
}
# Runs "$@" under timeout for `limit CAP` seconds, or returns 125 at once when no time is left.
timed() {
  local t
  t="$(limit "$1")"
  shift
  [ "$t" -ge 5 ] || return 125
  timeout -k 5 "$t" "$@"
}
# Sets `cap`, a step's limit inside a stage that must end by second $1 (of SECONDS):
# SAMPLEX_TIMEOUT or what the stage has left. Under 5 s it says "<what>: skipped, <stage> is
# spent", counts a failure and returns 1.
stage_cap() { # end what stage
  cap=$(($1 - SECONDS))
  [ "$cap" -lt "$to" ] || cap="$to"
  if [ "$cap" -lt 5 ]; then
    say "$2: skipped, $3 is spent"
    failed=1
    return 1
  fi
}
# The summary line of a step that found no time left.
spent() {
  say "$1: skipped, the ${budget}s budget is spent"
  failed=1
}

gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
gpu_file="$(echo "${gpu:-unknown-gpu}" | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')"
out="${SAMPLEX_BENCH_OUT:-$results/$(date -u +%F)-${gpu_file:-unknown-gpu}.jsonl}"
export SAMPLEX_BENCH_OUT="$out"

say "samplex bundle $SAMPLEX_GIT on ${gpu:-an unknown GPU} ($(hostname)), $(date -u '+%F %T') UTC"
say "stages:$stages(budget ${budget}s, $([ "$SAMPLEX_BENCH_QUICK" = 1 ] && echo quick || echo full) grid)"
{ nvidia-smi; echo; nvidia-smi -q; } >"$logs/nvidia-smi.txt" 2>&1 || true
env | grep -E '^(SAMPLEX|CUDA|LD_LIBRARY)' | sort >"$logs/env.txt" || true

if want tests; then
  read -r -a globs <<<"${SAMPLEX_TESTS:-gpu_* nvrtc}" # split only: globbed below, in bin/tests
  shopt -s nullglob
  test_bins=()
  for g in "${globs[@]}"; do test_bins+=("$bin"/tests/$g); done
  shopt -u nullglob
  [ ${#test_bins[@]} -gt 0 ] || say "tests: no test binary matches ${SAMPLEX_TESTS:-gpu_* nvrtc}"
  tests_end=$((SECONDS + ${SAMPLEX_TESTS_BUDGET:-240}))
  for t in "${test_bins[@]}"; do
    name="$(basename "$t")"
    stage_cap "$tests_end" "test $name" "the tests' ${SAMPLEX_TESTS_BUDGET:-240}s" || continue
    (cd "$results" && timed "$cap" "$t" --nocapture) >"$logs/test-$name.log" 2>&1
    rc=$?
    [ $rc -ne 125 ] || { spent "test $name"; continue; }
    res="$(grep -E '^test result:' "$logs/test-$name.log" | tail -n 1)"
    skips="$(grep -c 'SKIPPED' "$logs/test-$name.log")"
    if [ $rc -eq 0 ]; then
      say "test $name: PASS  ${res#test result: }  ($skips SKIPPED lines)"
    else
      say "test $name: FAIL (rc $rc)  ${res#test result: }"
      failed=1
    fi
  done
fi

if want bench; then
  crit="$(mktemp -d)"
  (cd "$results" && export CRITERION_HOME="$crit" && timed "$bench_to" "$bin/benches/sampling" --bench) \
    >"$logs/bench.log" 2>&1
  rc=$?
  rm -rf "$crit"
  if [ $rc -eq 125 ]; then
    spent bench
  else
    say "bench: rc $rc; $(grep -E '^(done:|SKIPPED: no|ERROR)' "$logs/bench.log" | tail -n 1)"
    [ $rc -eq 0 ] || failed=1
  fi
fi

if want sanitizer; then
  cs="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1 || true)"
  if [ -z "$cs" ]; then
    say "sanitizer: compute-sanitizer not found; skipped"
  else
    # Targets: "smoke" is the bench binary without --bench, which launches every op once per
    # dtype and per row-split path (cluster, grid, one block) on a small batch: every kernel
    # under each tool in about a minute (the probability ops too, at one shape each, aligned
    # and not). Test binaries (globs) reach the other shapes, slowly: the logit edits
    # (kernels/edits.cu) and token_log_probs are not bench ops, so their tests stand in for
    # them, and the bit-for-bit tests of the n draws from probabilities and of the speculative
    # verification reach the split rows and special rows the smoke does not (the verification on
    # logits its f16 and bf16 kernels too: the smoke's probability ops are f32), and the packed
    # layout's tests memcheck the clamp of bad offsets (the emulator does not check bounds).
    # BINARY:FILTER runs only the tests whose names contain FILTER.
    default_sanitize="smoke gpu_edits gpu_softmax:token_log_probs gpu_softmax:several_draws_per_row_are gpu_speculative:verification_agrees gpu_speculative:verification_on_logits gpu_speculative:packed"
    read -r -a targets <<<"${SAMPLEX_SANITIZE:-$default_sanitize}"
    read -r -a tools <<<"${SAMPLEX_SANITIZE_TOOLS:-memcheck racecheck synccheck}"
    runs=()
    shopt -s nullglob
    for g in "${targets[@]}"; do
      if [ "$g" = smoke ]; then
        runs+=("$bin/benches/sampling")
      else
        for t in "$bin"/tests/${g%%:*}; do
          if [ -e "$t" ]; then runs+=("$t${g#"${g%%:*}"}"); fi
        done
      fi
    done
    shopt -u nullglob
    [ ${#runs[@]} -gt 0 ] || say "sanitizer: nothing matches ${SAMPLEX_SANITIZE:-$default_sanitize}"
    san_end=$((SECONDS + ${SAMPLEX_SANITIZE_BUDGET:-150}))
    for t in "${runs[@]}"; do
      filter="${t#*:}"
      [ "$filter" != "$t" ] || filter=""
      t="${t%%:*}"
      name="$(basename "$t")"
      args=(--test-threads=1)
      [ -z "$filter" ] || { args+=("$filter"); name="$name-$filter"; }
      [ "$name" = sampling ] && { name=smoke; args=(); }
      for tool in "${tools[@]}"; do
        stage_cap "$san_end" "sanitizer $tool $name" "the sanitizer's ${SAMPLEX_SANITIZE_BUDGET:-150}s" || continue
        (cd "$results" && timed "$cap" "$cs" --tool "$tool" --error-exitcode 86 --print-limit 200 \
          "$t" "${args[@]}") >"$logs/sanitizer-$tool-$name.log" 2>&1
        rc=$?
        [ $rc -ne 125 ] || { spent "sanitizer $tool $name"; continue; }
        summ="$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/sanitizer-$tool-$name.log" | tail -n 1)"
        if [ $rc -eq 0 ]; then
          say "sanitizer $tool $name: PASS  $summ"
        else
          say "sanitizer $tool $name: FAIL (rc $rc)  $summ"
          failed=1
        fi
      done
    done
  fi
fi

if want peers; then
  if [ ! -f "$here/peers.py" ] || ! command -v python3 >/dev/null; then
    say "peers: no python3 or no peers.py; skipped"
  else
    # One process per peer, FlashInfer first (the comparison that matters most): a peer that
    # crashes or breaks the CUDA context takes only its own points with it. Its check comes
    # first: a peer that computes something else must not be timed as a peer. Per peer, the
    # logit ops, then the probability ops in processes of their own (their own check, logs and
    # lines, and a shorter cap), so that they cannot cost the logit comparison its points;
    # FlashInfer's probability ops come before PyTorch's logit ops, whose full grid rarely
    # ends inside the budget.
    for impl in flashinfer torch; do
      for only in logits probs; do
        name="$impl" # the logit runs keep their names: peers-check-torch.log, "peers torch"
        [ "$only" = logits ] || name="$impl-$only"
        timed "$to" python3 "$here/peers.py" --check --impls "$impl" --only "$only" \
          >"$logs/peers-check-$name.log" 2>&1
        rc=$?
        if [ $rc -eq 125 ]; then
          spent "peers check $name"
          continue
        fi
        say "peers check $name: rc $rc; $(grep -E '^(done:|SKIPPED)' "$logs/peers-check-$name.log" | tail -n 1)"
        if [ $rc -ne 0 ]; then
          say "peers $name: not timed (its check failed)"
          failed=1
          continue
        fi
        cap_s="$bench_to"
        [ "$only" = logits ] || cap_s="$probs_to"
        timed "$cap_s" python3 "$here/peers.py" --impls "$impl" --only "$only" --out "$out" \
          >"$logs/peers-$name.log" 2>&1
        rc=$?
        if [ $rc -eq 125 ]; then
          spent "peers $name"
        else
          say "peers $name: rc $rc; $(grep -E '^(done:|SKIPPED)' "$logs/peers-$name.log" | tail -n 1)"
          [ $rc -eq 0 ] || failed=1
        fi
      done
    done
  fi
fi

if want report; then
  if [ -f "$out" ] && command -v python3 >/dev/null; then
    python3 "$here/report.py" "$out" --md "$results/BENCHMARKS.md" --png "$results/benchmarks.png" \
      >"$logs/report.log" 2>&1
    say "report: rc $?; $(tail -n 1 "$logs/report.log")"
  else
    say "report: no results file ($out) or no python3; skipped"
  fi
fi

# At most 8 files of ≤ 16 MiB come back: cut long logs, pack them into one archive.
for f in "$logs"/*; do
  if [ "$(stat -c %s "$f")" -gt $((4 << 20)) ]; then
    { head -c $((2 << 20)) "$f"; printf '\n[... cut by run.sh ...]\n'; tail -c $((2 << 20)) "$f"; } >"$f.cut"
    mv "$f.cut" "$f"
  fi
done
tar -czf "$results/logs.tar.gz" -C "$results" logs && rm -rf "$logs"
say "results: $(cd "$results" && ls | tr '\n' ' ')(${SECONDS}s)"
exit $failed
RUN
chmod +x "$bundle/run.sh"

size_kib="$(du -sk "$bundle" | cut -f1)"
echo "== .device-bundle: $((size_kib / 1024)) MiB, git $git_rev"
if [ "$size_kib" -gt $((60 * 1024)) ]; then
  echo "warning: the bundle is over 60 MiB; a device run carries at most 64 MiB" >&2
fi
echo "on the GPU host: bash .device-bundle/run.sh <results-dir>"
