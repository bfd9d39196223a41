#!/usr/bin/env bash
# Builds the static bannou-host binary and, unless --binary-only, the node image
# FROM scratch through the Docker API (`bannou-host image build`). See docs/IMAGE.md.
#
#   scripts/build-image.sh [--tag bannou:latest] [--binary-only]
#
# The static binary is target/static/x86_64-unknown-linux-gnu/release/bannou-host (its own
# target dir, so the debug build in target/ is untouched). Prints the binary path last
# with --binary-only.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="bannou:latest"
binary_only=0
while (($#)); do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --tag=*) tag="${1#--tag=}"; shift ;;
        --binary-only) binary_only=1; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

target=x86_64-unknown-linux-gnu
target_dir=target/static
bin="$target_dir/$target/release/bannou-host"

# +crt-static links glibc (and mimalloc, a C library built by the cc crate) statically;
# the explicit --target keeps proc-macros and build scripts dynamic (docs/IMAGE.md).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" --target-dir "$target_dir" -p bannou-host >&2

if ((binary_only)); then
    echo "$bin"
    exit 0
fi
"$bin" image build --tag "$tag"
