#!/usr/bin/env bash
# Runs every Fuzz* target of the module for FUZZTIME (default 5s) each, one at
# a time (go test -fuzz takes one target per run). Fails on the first crasher;
# go test then writes it under the package's testdata/fuzz/ to commit as a seed.
set -euo pipefail

cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
FUZZTIME="${FUZZTIME:-5s}"

mapfile -t pkgs < <(go list ./...)
total=0
for pkg in "${pkgs[@]}"; do
	# -list prints the matching names, then "ok <pkg> <time>".
	targets=$(go test -list '^Fuzz' -run '^$' "$pkg" | grep -E '^Fuzz' || true)
	for target in $targets; do
		echo "==> fuzz $pkg $target for $FUZZTIME"
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"; then
			echo "FAIL: fuzz target $target in $pkg found a failure (see testdata/fuzz/$target/ in that package)" >&2
			exit 1
		fi
		total=$((total + 1))
	done
done
if [ "$total" -eq 0 ]; then
	echo "fuzz-short: no Fuzz targets found" >&2
	exit 1
fi
echo "fuzz-short: $total targets passed ($FUZZTIME each)"
