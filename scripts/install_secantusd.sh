#!/usr/bin/env bash
# Usage: scripts/install_secantusd.sh VERSION
#
# Makes sure SecantusDB's Rust server `secantusd-rs` (crate secantus-mdb) VERSION is installed where the app looks
# for it (app/embedded.py: PATH, else $CARGO_HOME/bin). `make run` and `make test` call this before they start.
#   - already installed at VERSION: one line, no network, exit 0;
#   - cargo, cmake and a C compiler present: `cargo install` into cargo's own bin folder (about 4 minutes the first
#     time: it builds WiredTiger), so any clone on this machine finds it;
#   - anything missing, or the build fails: says so and exits 0 anyway. The app then runs SecantusDB's Python
#     server (installed into .venv by pip), which works, only about 10x slower at imports.
set -uo pipefail

version="${1:?usage: $0 VERSION}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
cargo_bin="$cargo_home/bin"
binary="secantusd-rs"

reports() {  # reports PATH VERSION: does the binary at PATH say it is VERSION?
    [ -x "$1" ] && [ "$("$1" --version 2>/dev/null | head -n 1)" = "$binary $2" ]
}

# The binary the app will start: the first on PATH, else the one in cargo's bin folder (as find_server does).
in_use="$(command -v "$binary" 2>/dev/null || true)"
[ -n "$in_use" ] || in_use="$cargo_bin/$binary"
if reports "$in_use" "$version"; then
    echo "$binary $version already installed: $in_use"
    exit 0
fi
shadowed() {
    echo "warning: $in_use (not $version) comes first on PATH and is the one the app will start;" \
        "remove it or set EMBEDDED_DB_SERVER=$cargo_bin/$binary" >&2
}
if reports "$cargo_bin/$binary" "$version"; then
    shadowed
    exit 0
fi

fallback() {  # fallback REASON...: what the app will start instead
    if [ -x "$in_use" ]; then
        echo "secantusd-rs: $*; the embedded database will be $in_use ($("$in_use" --version 2>/dev/null \
            | head -n 1)), not $version." >&2
    else
        echo "secantusd-rs: $*; the embedded database will be SecantusDB's Python server (about 10x slower" \
            "imports)." >&2
    fi
}

cargo="$(command -v cargo 2>/dev/null || true)"
[ -n "$cargo" ] || { [ -x "$cargo_bin/cargo" ] && cargo="$cargo_bin/cargo"; }
cc="${CC:-}"
[ -n "$cc" ] || cc="$(command -v cc || command -v gcc || command -v clang || true)"
missing=()
[ -n "$cargo" ] || missing+=("cargo")
command -v cmake >/dev/null 2>&1 || missing+=("cmake")
[ -n "$cc" ] || missing+=("a C compiler")
if [ "${#missing[@]}" -gt 0 ]; then
    fallback "not installed (missing: ${missing[*]}). For the fast one install Rust (https://rustup.rs), cmake and" \
        "gcc, then run \`make secantusd\`"
    exit 0
fi

log="$(mktemp "${TMPDIR:-/tmp}/secantusd-build.XXXXXX.log")"
echo "building $binary $version with cargo (first time only, about 4 minutes; log: $log)"
started=$(date +%s)
# --ignore-rust-version: see SECANTUS_MDB in the Makefile. --root is cargo's default root, spelt out so that a
# CARGO_INSTALL_ROOT or install.root setting cannot put the binary where the app does not look. --force: we only
# get here when the binary there is not VERSION, and cargo refuses to replace a binary it has no record of.
"$cargo" install secantus-mdb --version "=$version" --locked --ignore-rust-version --root "$cargo_home" --force 2>&1 \
    | tee "$log"
status=${PIPESTATUS[0]}
took=$(( $(date +%s) - started ))

if [ "$status" -ne 0 ] || ! reports "$cargo_bin/$binary" "$version"; then
    {
        echo
        echo "!!!!!!!! secantusd-rs $version: cargo install FAILED (exit $status after $took s). Last lines of $log:"
        tail -n 25 "$log" | sed 's/^/    /'
        echo "!!!!!!!!"
    } >&2
    fallback "build failed"
    exit 0
fi
rm -f "$log"
echo "$binary $version built in $took s"
[ "$in_use" = "$cargo_bin/$binary" ] || shadowed
