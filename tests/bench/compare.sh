#!/usr/bin/env bash
# One run, one table: the echo model alone, our gateway in front of it and LiteLLM's proxy in
# front of it, loaded by wrk at 1 and 32 connections, keep-alive and `Connection: close`.
#
# The gateway runs as deployed: release `proxy run` on a SQLite ledger, funded by a real top-up
# (local validator and relay, release `indexer run` with its controller, `proxy topup`), one
# wallet, a login token; every request is authenticated, reserved, relayed, settled and its
# debit signed and queued. LiteLLM's proxy runs with one worker, no database and a master key. Load
# generator, model and proxy share this machine.
#
# Usage: tests/bench/compare.sh [seconds per row, default 10]   (KEEP_WORK=1 keeps the logs;
# TARGETS="model gateway" skips LiteLLM; PERF=out.data records the gateway with `perf` during
# its 32-connection keep-alive row (an absolute path), for `perf report -i out.data`, and
# prints how many CPU seconds each process of the stack used in that row)
# Needs: cargo, python3 (venv), curl; installs wrk (apt) and litellm[proxy] (pip, into a venv of
# its own, $LITELLM_VENV, since it pins another `openai` than tests/openai does) if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROW_SECONDS=${1:-10}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

echo "== building (release gateway, indexer, relay and echo model; the validator in debug)" >&2
cargo build -q --release --no-default-features -p proxy -p indexer
cargo build -q --release --no-default-features --features relay -p localnet # relay and model
# The validator and faucet, with the test build's features (so its cache serves).
cargo build -q --workspace --features balance-payment/idl-build --bin localnet
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
VENV=${LITELLM_VENV:-$HOME/.cache/llm-gateway-litellm}
if [ ! -x "$VENV/bin/litellm" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'litellm[proxy]'
fi

REL=$TARGET/release
DBG=$TARGET/debug
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
cd "$WORK"
RPC=18899 RELAY=17447 MOCK=18000 GATEWAY=18080 LITELLM=14000

# The outside world and the operator, as in the README's walk-through.
"$DBG/localnet" validator --rpc-port $RPC > chain.log 2>&1 &
PIDS="validator=$!"
"$REL/localnet" relay --port $RELAY --dir relay-store > relay.log 2>&1 &
PIDS="$PIDS relay=$!"
"$REL/localnet" echo --port $MOCK > model.log 2>&1 &
PIDS="$PIDS model=$!"
AUTHORITY=$("$REL/indexer" keygen --solana --out authority.json)
BOT=$("$REL/indexer" keygen --solana --out bot.json)
CONTROLLER=$("$REL/indexer" keygen --out controller.key | cut -d' ' -f1)
PROXY_KEY=$("$REL/indexer" keygen --out proxy.key | cut -d' ' -f1)
MACHINE=$("$REL/indexer" keygen --out machine.key | cut -d' ' -f1)
head -c 32 /dev/urandom > token.secret
"$DBG/localnet" airdrop "$AUTHORITY" 10 --url http://127.0.0.1:$RPC > /dev/null
"$DBG/localnet" airdrop "$BOT" 1 --url http://127.0.0.1:$RPC > /dev/null
"$REL/indexer" initialize --url http://127.0.0.1:$RPC --keypair authority.json > /dev/null
"$REL/indexer" namespace create --name bench --bot bot.json \
  --url http://127.0.0.1:$RPC --keypair authority.json > /dev/null
cat > indexer.toml <<EOF
database_url = "sqlite:ledger.sqlite"
health_listen = "127.0.0.1:19464"
[nostr]
relays = ["ws://127.0.0.1:$RELAY"]
machine = "$MACHINE"
controller_pubkeys = ["$CONTROLLER"]
proxy_pubkeys = ["$PROXY_KEY"]
[chain]
rpc_url = "http://127.0.0.1:$RPC"
ws_url = "ws://127.0.0.1:$((RPC + 1))"
namespace_id = 0
[controller]
bot_keypair = "bot.json"
nostr_secret_key_file = "controller.key"
treasury = "$AUTHORITY"
max_lamports_per_request = 10000000000
EOF
# One ledger token per request (prices round up), and no rate limit in the way.
cat > proxy.toml <<EOF
listen = "127.0.0.1:$GATEWAY"
database_url = "sqlite:ledger.sqlite"
[nostr]
relays = ["ws://127.0.0.1:$RELAY"]
secret_key_file = "proxy.key"
machine = "$MACHINE"
controller_pubkeys = ["$CONTROLLER"]
[chain]
rpc_url = "http://127.0.0.1:$RPC"
namespace_id = 0
[auth]
audience = "http://127.0.0.1:$GATEWAY"
token_secret_file = "token.secret"
[limits]
rpm = 1000000000
tpm = 1000000000000
[[models]]
id = "echo"
prompt_price = 1
completion_price = 1
max_output_tokens = 16
  [[models.upstreams]]
  base_url = "http://127.0.0.1:$MOCK/v1"
EOF
"$REL/indexer" migrate --database-url sqlite:ledger.sqlite > /dev/null
RUST_LOG=warn "$REL/indexer" run --config indexer.toml > indexer.log 2>&1 &
PIDS="$PIDS indexer=$!"
RUST_LOG=warn "$REL/proxy" run --config proxy.toml > proxy.log 2>&1 &
PROXY_PID=$!
PIDS="$PIDS gateway=$PROXY_PID"
until curl -sf http://127.0.0.1:$GATEWAY/health > /dev/null; do sleep 0.2; done
WALLET=$("$REL/indexer" keygen --solana --out wallet.json)
"$DBG/localnet" airdrop "$WALLET" 5 --url http://127.0.0.1:$RPC > /dev/null
export GATEWAY_URL=http://127.0.0.1:$GATEWAY
"$REL/proxy" register --keypair wallet.json > /dev/null
"$REL/proxy" deposit 4 --keypair wallet.json > /dev/null
"$REL/proxy" topup 3 --keypair wallet.json > /dev/null   # 3,000,000 tokens: one per request
TOKEN=$("$REL/proxy" login --wallet wallet.json)

TARGETS=${TARGETS:-model gateway litellm}
if [[ $TARGETS == *litellm* ]]; then
cat > litellm.yaml <<EOF
model_list:
  - model_name: echo
    litellm_params:
      model: openai/echo
      api_base: http://127.0.0.1:$MOCK/v1
      api_key: none
EOF
# LiteLLM checks a master key on every request (it refuses to start without one).
LITELLM_KEY="sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
LITELLM_MASTER_KEY=$LITELLM_KEY LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/litellm" --config litellm.yaml --port $LITELLM \
  --num_workers 1 > litellm.log 2>&1 &
for _ in $(seq 600); do
  curl -sf http://127.0.0.1:$LITELLM/health/liveliness > /dev/null && break
  sleep 0.2
done
curl -sf http://127.0.0.1:$LITELLM/health/liveliness > /dev/null \
  || { echo "LiteLLM did not start:" >&2; tail -30 litellm.log >&2; exit 1; }
fi

BODY='{"model":"echo","max_tokens":16,"messages":[{"role":"user","content":"hello there"}]}'
script() { # $1: bearer token or empty; $2: "close" or "keep-alive"
  cat <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Connection"] = "$2"
EOF
  [ -n "$1" ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $1\""
  return 0
}
# `Connection: close` rows leave a socket in TIME_WAIT per request (60 s each); past the local
# port range (~28,000) new connections fail, the gateway's to the model included. Each row
# starts once fewer than 2,000 are left.
drain_time_wait() {
  for _ in $(seq 70); do
    [ "$(ss -Htan state time-wait | wc -l)" -lt 2000 ] && return 0
    sleep 1
  done
}
cpu_seconds() { # "name seconds" per process of the stack, sorted by name
  local tick entry
  tick=$(getconf CLK_TCK)
  for entry in $PIDS; do
    awk -v name="${entry%%=*}" -v tick="$tick" '{ print name, ($14 + $15) / tick }' \
      "/proc/${entry#*=}/stat" 2>/dev/null
  done | sort
}
row() { # $1 name, $2 url, $3 token, $4 connections, $5 connection mode
  drain_time_wait
  script "$3" "$5" > load.lua
  local threads=$(( $4 > 1 ? 2 : 1 ))
  local out perf=""
  if [ -n "${PERF:-}" ] && [ "$1" = "our gateway" ] && [ "$4" = 32 ] && [ "$5" = keep-alive ]; then
    perf record -F 499 -g -p "$PROXY_PID" -o "$PERF" -- sleep "$ROW_SECONDS" 2> /dev/null &
    perf=$!
  fi
  [ -z "$perf" ] || cpu_seconds > cpu.before
  out=$(wrk -t$threads -c"$4" -d"${ROW_SECONDS}s" --latency -s load.lua "$2")
  if [ -n "$perf" ]; then
    cpu_seconds > cpu.after
    wait "$perf"
    echo "CPU seconds per process in that row (${ROW_SECONDS} s, wrk excluded):" \
      "$(join cpu.before cpu.after | awk '{printf "%s %.2f  ", $1, $3 - $2}')" >&2
  fi
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  errors=$(awk '/Non-2xx/ {print $5}' <<< "$out")
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$4" "$5" "$rps" "$p50" "$p99" "${errors:-0}"
  if [ -n "$errors" ]; then # show what the failures were
    echo "$1, $4 connections, $5: $errors non-2xx; status codes seen in proxy.log:" >&2
    grep -o 'status[=:] *[0-9]\{3\}' proxy.log 2>/dev/null | sort | uniq -c | sort -rn | head -5 >&2 || true
    curl -s -X POST "$2" -H 'Content-Type: application/json' ${3:+-H "Authorization: Bearer $3"} \
      -d "$BODY" -w '\n(HTTP %{http_code})\n' >&2 || true
  fi
}

echo "| target | connections | connection | requests/s | p50 | p99 | non-2xx |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for mode in keep-alive close; do
  for conns in 1 32; do
    [[ $TARGETS != *model* ]] ||
      row "echo model alone" "http://127.0.0.1:$MOCK/v1/chat/completions" "" $conns $mode
    [[ $TARGETS != *gateway* ]] ||
      row "our gateway" "http://127.0.0.1:$GATEWAY/v1/chat/completions" "$TOKEN" $conns $mode
    [[ $TARGETS != *litellm* ]] ||
      row "LiteLLM proxy (1 worker, no DB)" "http://127.0.0.1:$LITELLM/v1/chat/completions" "$LITELLM_KEY" $conns $mode
  done
done
"$REL/indexer" audit --database-url sqlite:ledger.sqlite > audit.json \
  || { echo "the ledger does not reconcile after the run:" >&2; cat audit.json >&2; exit 1; }
