#!/usr/bin/env bash
# Runs every Fuzz* target of the module for FUZZTIME (default 5s) each, one at
# a time (go test -fuzz takes one target per run). Fails on the first crasher;
# go test then writes it under the package's testdata/fuzz/ to commit as a seed.
set -euo pipefail

cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
FUZZTIME="${FUZZTIME:-5s}"

# One `go test -list` over the module: each package prints the matching names,
# then its "ok <pkg> <time>" line; anything else (no test files) is skipped.
if ! list=$(go test -list '^Fuzz' -run '^$' ./...); then
	printf '%s\n' "$list" >&2
	echo "fuzz-short: listing Fuzz targets failed (see above)" >&2
	exit 1
fi
total=0
targets=()
while read -r first second _; do
	case "$first" in
	Fuzz*) targets+=("$first") ;;
	ok)
		for target in "${targets[@]}"; do
			echo "==> fuzz $second $target for $FUZZTIME"
			out=$(mktemp)
			if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$second" </dev/null 2>&1 | tee "$out"; then
				# Go's fuzzer can end a short run with a bare "context
				# deadline exceeded" and no failing input when the machine
				# is overloaded: that is no finding, so run it once more.
				if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
					echo "fuzz-short: $target timed out without a failing input; running it again"
					if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$second" </dev/null; then
						rm -f "$out"
						total=$((total + 1))
						continue
					fi
				fi
				rm -f "$out"
				echo "FAIL: fuzz target $target in $second found a failure (see testdata/fuzz/$target/ in that package)" >&2
				exit 1
			fi
			rm -f "$out"
			total=$((total + 1))
		done
		targets=()
		;;
	esac
done <<<"$list"
if [ "$total" -eq 0 ]; then
	echo "fuzz-short: no Fuzz targets found" >&2
	exit 1
fi
echo "fuzz-short: $total targets passed ($FUZZTIME each)"
