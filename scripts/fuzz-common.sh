# Shared by scripts/fuzz-smoke and scripts/fuzz-long (sourced, not run):
# the cargo-fuzz command, how the targets are built, and each target's
# libFuzzer flags. Expects to be sourced from the fuzz/ directory.

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked -q
# Nightly where installed; otherwise stable with RUSTC_BOOTSTRAP=1 (what
# cargo-fuzz needs from nightly is only unstable flags).
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1 CARGO_CACHE_RUSTC_INFO=0
    fuzz=(cargo fuzz)
fi

# Release code with overflow checks and debug assertions on (-a), without
# AddressSanitizer (-s none): proto forbids unsafe code, so ASan has little
# to find, and it costs two to four times the speed.
build_flags=(-O -a -s none)

# Default -max_len: larger inputs only slow every run down; fuzz/max_len
# lists the targets that want another (`TARGET BYTES` per line).
default_max_len=4096

# Where cargo fuzz builds the target binaries.
fuzz_bin_dir() {
    echo "target/$(rustc -vV | sed -n 's/^host: //p')/release"
}

# The libFuzzer flags for target $1: -max_len, and -dict when
# fuzz/dicts/$1.dict exists.
target_flags() {
    local target=$1 max_len
    max_len=$(awk -v t="$target" '$1 == t { print $2 }' max_len 2>/dev/null)
    echo "-max_len=${max_len:-$default_max_len}"
    if [[ -f dicts/$target.dict ]]; then
        echo "-dict=dicts/$target.dict"
    fi
}
