#!/usr/bin/env bash
# The Cashu rail under load: release `proxy run` on a SQLite ledger in front of the echo model,
# taking ecash from a local `cdk-mintd` (fake Lightning). Every request is paid with its own
# token (received at the mint: one swap), served, settled, and its change issued (a second
# swap). Prints requests/s and client-side latency at 1 and at 8 concurrent clients, then the
# gateway's holdings and whether the books reconcile.
#
# Usage: tests/bench/cashu.sh [requests per row, default 200]
# Needs what `.ci/run` installs: cdk-mintd and the Nutshell virtualenv in ~/.cache/llm-gateway-tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${1:-200}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
TOOLS="$HOME/.cache/llm-gateway-tools"
cargo build -q --release --no-default-features -p proxy -p indexer
cargo build -q --release --no-default-features --features relay -p localnet
REL=$TARGET/release
BENCH=$PWD/tests/bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"
MINT=13338 MOCK=18001 GATEWAY=18081

echo "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about" > mnemonic
cat > mint.toml <<EOF
[info]
url = "http://127.0.0.1:$MINT/"
listen_host = "127.0.0.1"
listen_port = $MINT
mnemonic = "file:$WORK/mnemonic"
use_keyset_v2 = false
[mint_info]
name = "bench mint"
[[payment_backend]]
backend = "fakewallet"
unit = "sat"
min_mint = 1
max_mint = 1000000
min_melt = 1
max_melt = 1000000
[fake_wallet]
supported_units = ["sat"]
fee_percent = 0.0
reserve_fee_min = 0
min_delay_time = 0
max_delay_time = 0
[database]
engine = "sqlite"
EOF
"$TOOLS/bin/cdk-mintd" --work-dir "$WORK" config init --new-mint --file mint.toml > /dev/null
"$TOOLS/bin/cdk-mintd" --work-dir "$WORK" > mint.log 2>&1 &
"$REL/localnet" echo --port $MOCK > model.log 2>&1 &
"$REL/indexer" keygen --out proxy.key > /dev/null
MACHINE=$("$REL/indexer" keygen --out machine.key | cut -d' ' -f1)
cat > proxy.toml <<EOF
listen = "127.0.0.1:$GATEWAY"
database_url = "sqlite:ledger.sqlite"
[nostr]
secret_key_file = "proxy.key"
machine = "$MACHINE"
[limits]
rpm = 1000000000
tpm = 1000000000000
[cashu]
mints = ["http://127.0.0.1:$MINT"]
tokens_per_sat = 1
[[models]]
id = "echo"
prompt_price = 1000000
completion_price = 1000000
max_output_tokens = 16
  [[models.upstreams]]
  base_url = "http://127.0.0.1:$MOCK/v1"
EOF
RUST_LOG=warn "$REL/proxy" run --config proxy.toml > proxy.log 2>&1 &
for url in "http://127.0.0.1:$MINT/v1/info" "http://127.0.0.1:$GATEWAY/v1/models"; do
  for _ in $(seq 100); do curl -sf "$url" > /dev/null && break; sleep 0.1; done
done
"$TOOLS/cashu-venv/bin/python" "$BENCH/cashu_load.py" \
  "http://127.0.0.1:$GATEWAY" "http://127.0.0.1:$MINT" "$COUNT" 8
"$REL/proxy" cashu holdings --config proxy.toml
