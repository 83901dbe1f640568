#!/usr/bin/env bash
# Builds libtokenizers.a for github.com/daulet/tokenizers from the Go module's own
# Rust source (cargo --locked --release) and caches it outside the repo, keyed by
# version, so a second `make` does not rebuild it.
#   usage: build-tokenizers.sh VERSION CACHE_DIR   -> prints the folder holding libtokenizers.a
set -euo pipefail
version="${1:?version}"
cache="${2:?cache dir}"
out="$cache/tokenizers-$version"
if [[ -f "$out/lib/libtokenizers.a" ]]; then
	echo "$out/lib"
	exit 0
fi
command -v cargo >/dev/null || { echo "build-tokenizers: cargo not found; install Rust (rustup) first" >&2; exit 1; }
src="$(go mod download -json "github.com/daulet/tokenizers@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || { echo "build-tokenizers: module source for $version not found" >&2; exit 1; }
work="$out/src"
rm -rf "$work" && mkdir -p "$work" "$out/lib"
cp -r "$src"/. "$work"/ && chmod -R u+w "$work"
echo "build-tokenizers: cargo build --release --locked in $work (first time only; a few minutes)" >&2
(cd "$work" && CARGO_TARGET_DIR="$out/target" cargo build --release --locked >&2)
cp "$out/target/release/libtokenizers.a" "$out/lib/libtokenizers.a.tmp"
mv "$out/lib/libtokenizers.a.tmp" "$out/lib/libtokenizers.a"
rm -rf "$out/target" "$work"
echo "$out/lib"
