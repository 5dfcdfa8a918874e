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
# After the table, two measurements wrk cannot make (`localnet pace`, `localnet streams`): what
# the gateway adds at a fixed 1,000 requests/s, and its memory with 1,000 slow streams open at
# once (a chunk every 50 ms); then no reservation may be left and the ledger must reconcile.
#
# Usage: tests/bench/compare.sh [seconds per row, default 10]   (KEEP_WORK=1 keeps the logs;
# TARGETS="model gateway" skips LiteLLM; PERF=out.data records the gateway with `perf` during
# its 32-connection keep-alive row (an absolute path), for `perf report -i out.data`, and
# prints how many CPU seconds each process of the stack used in that row;
# LEDGER=postgres puts the ledger in a Postgres database of its own (dropped after) and
# REPLICAS=2 runs two gateways on it, each row's connections split between them;
# PACE_RATE and STREAMS change the 1,000s, 0 skips that measurement; WALLETS="1 100" runs the
# gateway's rows and the paced run once per count, each request from the next of that many
# funded wallets; MODES=keep-alive skips the `Connection: close` rows; WRAP_GATEWAY="heaptrack -o
# /tmp/gw" runs the first gateway under that command, for a heap profile — its memory figures
# are then the wrapper's; not PROXY_…: the gateway reads every PROXY_* variable as its config)
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
# Stops every process the script started, and their children (a WRAP_GATEWAY wrapper's gateway).
stop_all() {
  local pids; pids=$(jobs -p)
  for pid in $pids; do pkill -P "$pid" 2>/dev/null || true; done
  kill $pids 2>/dev/null || true; wait 2>/dev/null || true
}
trap 'stop_all; rm -rf "${RELAY_STORE:-}"; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
cd "$WORK"
RPC=18899 RELAY=17447 MOCK=18000 GATEWAY=18080 LITELLM=14000
REPLICAS=${REPLICAS:-1}
if [ "${LEDGER:-sqlite}" = postgres ]; then
  PG_ADMIN=${POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  PG_DB=bench_$$_$RANDOM
  psql -q "$PG_ADMIN" -c "CREATE DATABASE $PG_DB"
  trap 'stop_all; rm -rf "${RELAY_STORE:-}"; psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)"; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
  DATABASE_URL=${PG_ADMIN%/*}/$PG_DB
else
  DATABASE_URL=sqlite:ledger.sqlite
fi

# The outside world and the operator, as in the walk-through (proxy/OPERATING.md).
"$DBG/localnet" validator --rpc-port $RPC > chain.log 2>&1 &
PIDS="validator=$!"
# The relay stands for someone else's server: its store goes to memory (/dev/shm) when there is
# one, so its fsync per event does not queue on this disk in front of the ledger's commits.
RELAY_STORE=relay-store
[ -d /dev/shm ] && [ -w /dev/shm ] && RELAY_STORE=$(mktemp -d -p /dev/shm relay-store.XXXXXX)
"$REL/localnet" relay --port $RELAY --dir "$RELAY_STORE" > relay.log 2>&1 &
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
database_url = "$DATABASE_URL"
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
for replica in $(seq "$REPLICAS"); do
cat > proxy-$replica.toml <<EOF
listen = "127.0.0.1:$((GATEWAY + replica - 1))"
database_url = "$DATABASE_URL"
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
# The same model, streamed slowly (a chunk every 50 ms), for the memory measurement.
[[models]]
id = "echo-slow"
prompt_price = 1
completion_price = 1
max_output_tokens = 128
  [[models.upstreams]]
  base_url = "http://127.0.0.1:$MOCK/v1"
  model = "echo+slow"
EOF
done
"$REL/indexer" migrate --database-url "$DATABASE_URL" > /dev/null
RUST_LOG=warn "$REL/indexer" run --config indexer.toml > indexer.log 2>&1 &
PIDS="$PIDS indexer=$!"
GATEWAYS=()
for replica in $(seq "$REPLICAS"); do
  wrap=""
  [ "$replica" != 1 ] || wrap=${WRAP_GATEWAY:-}
  RUST_LOG=warn $wrap "$REL/proxy" run --config proxy-$replica.toml > proxy-$replica.log 2>&1 &
  [ "$replica" = 1 ] && PROXY_PID=$!
  PIDS="$PIDS gateway$replica=$!"
  GATEWAYS+=("http://127.0.0.1:$((GATEWAY + replica - 1))")
  until curl -sf "${GATEWAYS[-1]}/health" > /dev/null; do
    kill -0 $! 2>/dev/null || { tail -5 proxy-$replica.log >&2; exit 1; }
    sleep 0.2
  done
done
WALLET=$("$REL/indexer" keygen --solana --out wallet.json)
"$DBG/localnet" airdrop "$WALLET" 5 --url http://127.0.0.1:$RPC > /dev/null
export GATEWAY_URL=http://127.0.0.1:$GATEWAY
"$REL/proxy" register --keypair wallet.json > /dev/null
"$REL/proxy" deposit 4 --keypair wallet.json > /dev/null
"$REL/proxy" topup 3 --keypair wallet.json > /dev/null   # 3,000,000 tokens: one per request
TOKEN=$("$REL/proxy" login --wallet wallet.json)
# More wallets, each funded the same way (ten at a time): tokens.txt holds every wallet's token.
WALLETS=${WALLETS:-1}
MOST_WALLETS=$(tr ' ' '\n' <<< "$WALLETS" | sort -n | tail -1)
echo "$TOKEN" > tokens.txt
fund_wallet() {
  "$REL/indexer" keygen --solana --out "wallet-$1.json" > "wallet-$1.address"
  "$DBG/localnet" airdrop "$(cat "wallet-$1.address")" 5 --url http://127.0.0.1:$RPC > /dev/null
  "$REL/proxy" register --keypair "wallet-$1.json" > /dev/null
  "$REL/proxy" deposit 4 --keypair "wallet-$1.json" > /dev/null
  "$REL/proxy" topup 3 --keypair "wallet-$1.json" > /dev/null
  "$REL/proxy" login --wallet "wallet-$1.json" > "token-$1.txt"
}
export -f fund_wallet; export REL DBG RPC
if [ "$MOST_WALLETS" -gt 1 ]; then
  seq 2 "$MOST_WALLETS" | xargs -P 10 -I{} bash -c 'fund_wallet {}'
  cat $(seq -f 'token-%g.txt' 2 "$MOST_WALLETS") >> tokens.txt
fi

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
script() { # $1: bearer token, empty, or "wallets:N" (the first N of tokens.txt, in turn);
  # $2: "close" or "keep-alive"
  cat <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Connection"] = "$2"
EOF
  if [[ $1 == wallets:* ]]; then
    echo "tokens = {$(head -n "${1#wallets:}" tokens.txt | sed 's/.*/"&"/' | paste -sd,)}"
    echo 'n = math.random(#tokens)'
    echo 'request = function() n = n % #tokens + 1; wrk.headers["Authorization"] = "Bearer " .. tokens[n]; return wrk.format() end'
  elif [ -n "$1" ]; then
    echo "wrk.headers[\"Authorization\"] = \"Bearer $1\""
  fi
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
cpu_seconds() { # "name seconds" per process of the stack (and Postgres's), sorted by name
  local tick entry
  tick=$(getconf CLK_TCK)
  {
    for entry in $PIDS; do
      awk -v name="${entry%%=*}" -v tick="$tick" '{ print name, ($14 + $15) / tick }' \
        "/proc/${entry#*=}/stat" 2>/dev/null
    done
    # On Postgres, each server process (one per connection) by its pid.
    [ "${LEDGER:-sqlite}" != postgres ] || for pid in $(pgrep -x postgres); do
      awk -v name="postgres.$pid" -v tick="$tick" '{ print name, ($14 + $15) / tick }' \
        "/proc/$pid/stat" 2>/dev/null
    done
  } | sort
}
# wrk's latency ("850.00us", "1.39ms", "1.20s") in milliseconds.
to_ms() { awk '{ v = $1 + 0; if ($1 ~ /us$/) v /= 1000; else if ($1 ~ /[0-9]s$/) v *= 1000; printf "%.2fms", v }' <<< "$1"; }
worse() { awk -v a="${1%ms}" -v b="${2%ms}" 'BEGIN { printf "%.2fms", (a + 0 > b + 0 ? a : b) }'; }
row() { # $1 name, $2 URLs (space-separated: one wrk each, connections split), $3 token,
  # $4 connections, $5 connection mode. Several URLs: requests/s summed, the worst p50/p99.
  drain_time_wait
  script "$3" "$5" > load.lua
  local urls=($2)
  [ "$4" -ge "${#urls[@]}" ] || urls=("${urls[0]}")
  local conns=$(( $4 / ${#urls[@]} ))
  local threads=$(( conns > 1 ? 2 : 1 ))
  local perf="" i waits=()
  if [ -n "${PERF:-}" ] && [[ "$1" == "our gateway"* ]] && [ "$4" = 32 ] && [ "$5" = keep-alive ] \
    && [ ! -e "$PERF" ]; then
    perf record -F 499 -g -p "$PROXY_PID" -o "$PERF" -- sleep "$ROW_SECONDS" 2> /dev/null &
    perf=$!
  fi
  [ -z "$perf" ] || cpu_seconds > cpu.before
  for i in "${!urls[@]}"; do
    wrk -t$threads -c"$conns" -d"${ROW_SECONDS}s" --latency -s load.lua "${urls[$i]}" > wrk-$i.out &
    waits+=($!)
  done
  wait "${waits[@]}"
  if [ -n "$perf" ]; then
    cpu_seconds > cpu.after
    wait "$perf"
    echo "CPU seconds per process in that row (${ROW_SECONDS} s, wrk excluded):" \
      "$(join cpu.before cpu.after | awk '{printf "%s %.2f  ", $1, $3 - $2}')" >&2
  fi
  local rps=0 p50="" p99="" errors=0 out
  for i in "${!urls[@]}"; do
    out=$(cat wrk-$i.out)
    rps=$(awk -v sum="$rps" '/Requests\/sec/ {printf "%.2f", sum + $2}' <<< "$out")
    p50=$(worse "$p50" "$(to_ms "$(awk '$1 == "50%" {print $2}' <<< "$out")")")
    p99=$(worse "$p99" "$(to_ms "$(awk '$1 == "99%" {print $2}' <<< "$out")")")
    errors=$(( errors + $(awk '/Non-2xx/ {print $5}' <<< "$out" | grep . || echo 0) ))
  done
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$4" "$5" "$rps" "$p50" "$p99" "$errors"
  if [ "$errors" != 0 ]; then # show what the failures were
    echo "$1, $4 connections, $5: $errors non-2xx; status codes seen in the gateways' logs:" >&2
    cat proxy-*.log 2>/dev/null | grep -o 'status[=:] *[0-9]\{3\}' | sort | uniq -c | sort -rn | head -5 >&2 || true
    curl -s -X POST "${urls[0]}" -H 'Content-Type: application/json' ${3:+-H "Authorization: Bearer $(head -n1 tokens.txt)"} \
      -d "$BODY" -w '\n(HTTP %{http_code})\n' >&2 || true
  fi
}

CHAT=/v1/chat/completions
# First, on the fresh gateway: its memory with many slow streams open (before the load rows,
# which leave their own high-water mark in the allocator).
if [ "${STREAMS:-1000}" != 0 ]; then
  # 100 words: the echo model streams them back one chunk per 50 ms (about 5 s a stream).
  WORDS=$(printf 'word%s ' $(seq 100))
  "$REL/localnet" streams --count "${STREAMS:-1000}" --url "${GATEWAYS[0]}$CHAT" \
    --token "$TOKEN" --pid "$PROXY_PID" \
    --body "{\"model\":\"echo-slow\",\"stream\":true,\"max_tokens\":128,\"messages\":[{\"role\":\"user\",\"content\":\"$WORDS\"}]}"
  echo
fi

echo "| target | connections | connection | requests/s | p50 | p99 | non-2xx |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
ENGINE=$([ "${LEDGER:-sqlite}" = postgres ] && echo Postgres || echo SQLite)
for mode in ${MODES:-keep-alive close}; do
  for conns in 1 32; do
    [[ $TARGETS != *model* ]] ||
      row "echo model alone" "http://127.0.0.1:$MOCK$CHAT" "" $conns $mode
    [[ $TARGETS != *gateway* ]] || for wallets in $WALLETS; do
      row "our gateway ($ENGINE, $REPLICAS replica$([ "$REPLICAS" = 1 ] || echo s), $wallets wallet$([ "$wallets" = 1 ] || echo s))" \
        "$(printf "%s$CHAT " "${GATEWAYS[@]}")" "wallets:$wallets" $conns $mode
    done
    [[ $TARGETS != *litellm* ]] ||
      row "LiteLLM proxy (1 worker, no DB)" "http://127.0.0.1:$LITELLM$CHAT" "$LITELLM_KEY" $conns $mode
  done
done

if [ "${PACE_RATE:-1000}" != 0 ]; then
  for wallets in $WALLETS; do
    echo
    echo "Paced, $ENGINE, $REPLICAS replica(s), $wallets wallet(s):"
    "$REL/localnet" pace --rate "${PACE_RATE:-1000}" --seconds "$ROW_SECONDS" \
      --direct "http://127.0.0.1:$MOCK$CHAT" $(printf -- "--through %s$CHAT " "${GATEWAYS[@]}") \
      $(head -n "$wallets" tokens.txt | sed 's/^/--token /') --body "$BODY"
  done
fi
# Settlements land just after the responses end; give them up to 10 s.
for _ in $(seq 100); do
  BALANCE=$(curl -sf -H "Authorization: Bearer $TOKEN" "${GATEWAYS[0]}/v1/balance")
  python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["reserved"] != 0)' "$BALANCE" && break
  sleep 0.1
done
python3 -c 'import json,sys; b = json.loads(sys.argv[1]); sys.exit(f"reservations left after the run: {b}" if b["reserved"] else 0)' "$BALANCE"
"$REL/indexer" audit --database-url "$DATABASE_URL" > audit.json \
  || { echo "the ledger does not reconcile after the run:" >&2; cat audit.json >&2; exit 1; }
echo "after the run: nothing reserved, and the ledger reconciles (indexer audit)"
