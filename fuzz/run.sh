#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS_PER_TARGET seconds
# (default 20), starting from the committed seeds (fuzz/seeds/<target>/)
# and growing a working corpus in fuzz/corpus/<target>/ (not committed).
# Exits non-zero on the first target that crashes, after printing the
# crash artifact's path. See fuzz/README.md.
#
#   fuzz/run.sh         # 20 s a target, as CI runs it
#   fuzz/run.sh 600     # 10 minutes a target
#
# FUZZ_TARGETS="config truncate" fuzz/run.sh runs only those targets.
set -euo pipefail
cd "$(dirname "$0")"

seconds_per_target="${1:-20}"
if ! [[ "$seconds_per_target" =~ ^[0-9]+$ ]] || [ "$seconds_per_target" -eq 0 ]; then
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET]" >&2
    exit 2
fi

# cargo-fuzz drives nightly-only rustc flags (-Zsanitizer, sancov passes);
# RUSTC_BOOTSTRAP=1 lets the machine's stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
cargo_fuzz_version="0.13.1"
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version"; then
    echo "installing cargo-fuzz $cargo_fuzz_version"
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

# Release with debug assertions and overflow checks, AddressSanitizer, in
# fuzz/target (never the workspace's target/). 16 codegen units: a
# quicker cold build on a small machine, at little cost in speed.
build_flags=(--release --debug-assertions --sanitizer address --codegen-units 16 --target-dir target)
targets=(${FUZZ_TARGETS:-chat_request provider_response truncate config})

started=$SECONDS
cargo fuzz build "${build_flags[@]}"
echo "fuzz targets built in $((SECONDS - started)) s"

dict_for() {
    case "$1" in
        chat_request | provider_response) echo dicts/json.dict ;;
        config) echo dicts/config.dict ;;
        *) echo "" ;;
    esac
}

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    before=$(ls "artifacts/$target")
    fuzz_args=(-max_total_time="$seconds_per_target" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    dict=$(dict_for "$target")
    if [ -n "$dict" ]; then
        fuzz_args+=(-dict="$dict")
    fi
    echo "== $target: ${seconds_per_target} s"
    # New inputs go to the first directory (the working corpus); the seeds
    # are only read.
    if ! cargo fuzz run "${build_flags[@]}" "$target" "corpus/$target" "seeds/$target" -- "${fuzz_args[@]}"; then
        echo "FUZZ FAILURE in target $target" >&2
        for artifact in artifacts/"$target"/*; do
            if [ -e "$artifact" ] && ! grep -qxF "$(basename "$artifact")" <<<"$before"; then
                echo "crash artifact: fuzz/$artifact" >&2
                echo "reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} $target $artifact)" >&2
            fi
        done
        exit 1
    fi
done
echo "fuzzing done: ${#targets[@]} targets, ${seconds_per_target} s each, no crash ($((SECONDS - started)) s in all)"
