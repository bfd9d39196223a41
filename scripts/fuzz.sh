#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a fixed time each and prints libFuzzer's final
# stats. See RELIABILITY.md, "Hostile input".
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      (defaults: all, 300)
#
# TARGET is `preset` or `api_request`. The seeds of fuzz/seeds/TARGET/ are copied into
# fuzz/corpus/TARGET/ (kept between runs, not committed) before each run. One libFuzzer
# process at a time (a single job on one core). Crash inputs land in fuzz/artifacts/TARGET/;
# replay one with `scripts/fuzz.sh --replay TARGET FILE`.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). It wants nightly flags; on stable
# we set RUSTC_BOOTSTRAP=1. FUZZ_SANITIZER picks the sanitizer (default `address`; `none`
# runs without AddressSanitizer, in its own build); FUZZ_TARGET_DIR the build directory
# (default fuzz/target); FUZZ_EXTRA more libFuzzer flags (e.g. `-len_control=0` to try
# inputs up to -max_len from the start).
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"
# The fuzz workspace builds with its own flags and target triple: keep it out of target/.
fuzz_args=(--sanitizer "$sanitizer" --target-dir "${FUZZ_TARGET_DIR:-fuzz/target}")

# `preset` does not need bannou-host: build it without (much faster).
target_args() {
    case "$1" in
        preset) echo --no-default-features ;;
    esac
}

# Largest input tried; libFuzzer's default is only the largest seed.
max_len() {
    case "$1" in
        preset) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

all_targets=(preset api_request)

if [[ "${1:-}" == "--replay" ]]; then
    [[ $# -eq 3 ]] || { echo "usage: scripts/fuzz.sh --replay TARGET FILE" >&2; exit 2; }
    # shellcheck disable=SC2046
    exec cargo fuzz run "${fuzz_args[@]}" $(target_args "$2") "$2" "$3"
fi
case "${1:-all}" in
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    all) targets=("${all_targets[@]}") ;;
    preset|api_request) targets=("$1") ;;
    *) echo "fuzz.sh: unknown target $1 (expected: ${all_targets[*]} or all)" >&2; exit 2 ;;
esac
seconds="${2:-300}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number" >&2; exit 2; }

status=0
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    cp fuzz/seeds/"$target"/* "$corpus"/
    before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    log="fuzz/artifacts/$target.log"
    echo "== $target: ${seconds}s, sanitizer $sanitizer, corpus $corpus ($(find "$corpus" -type f | wc -l) inputs)"
    set +e
    # -timeout: an input that takes 10 s is a hang, reported like a crash.
    # shellcheck disable=SC2046
    cargo fuzz run "${fuzz_args[@]}" $(target_args "$target") "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
        -print_final_stats=1 ${FUZZ_EXTRA:-} >"$log" 2>&1
    rc=$?
    set -e
    after=$(find "fuzz/artifacts/$target" -type f | wc -l)
    grep -E '^(stat::|Done |#[0-9]+ +DONE)' "$log" || tail -n 20 "$log"
    echo "== $target: exit $rc, new crash/timeout artifacts: $((after - before)) (full log: $log)"
    if ((rc != 0)); then
        grep -E '^(==[0-9]+==|SUMMARY|thread .* panicked|Test unit written)' "$log" | head -n 10 || true
        status=1
    fi
done
exit "$status"
