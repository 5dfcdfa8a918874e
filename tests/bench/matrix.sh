#!/usr/bin/env bash
# Issue 24's matrix in one run: one gateway on SQLite and two replicas on one Postgres ledger,
# each with one wallet (every request locks the same balance row) and with 100 wallets, at 1
# and 32 keep-alive connections, then what each adds at a fixed 1,000 requests/s; last, the
# Postgres pair's share of the SQLite gateway's throughput at 32 connections.
#
# Usage: tests/bench/matrix.sh [seconds per row, default 5]. Runs compare.sh twice (each with
# its own stack, funded by real top-ups); its environment knobs (PERF, KEEP_WORK) pass through.
set -euo pipefail
cd "$(dirname "$0")"
ROW=${1:-5}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export STREAMS=0 MODES=keep-alive WALLETS="1 100"
TARGETS="model gateway" LEDGER=sqlite REPLICAS=1 ./compare.sh "$ROW" | tee "$OUT/sqlite"
echo
TARGETS=gateway LEDGER=postgres REPLICAS=2 ./compare.sh "$ROW" | tee "$OUT/postgres"
echo
for wallets in "1 wallet)" "100 wallets)"; do
  sqlite=$(grep -F "SQLite" "$OUT/sqlite" | grep -F "$wallets" | awk -F'|' '$3 + 0 == 32 {print $5 + 0}')
  postgres=$(grep -F "Postgres" "$OUT/postgres" | grep -F "$wallets" | awk -F'|' '$3 + 0 == 32 {print $5 + 0}')
  awk -v s="$sqlite" -v p="$postgres" -v w="${wallets%)}" 'BEGIN {
    printf "32 connections, %s: two Postgres replicas %.0f/s = %.0f %% of one SQLite gateway (%.0f/s)\n", w, p, 100 * p / s, s }'
done
