#!/usr/bin/env bash
# HTTP/1.1 throughput of wrk, oha and herd against `herd target`.
#
# The target is pinned to one core, each load tool in turn to another, all with the same number
# of connections (VUs for herd) hitting GET /fast. Before each measured run the target's counters
# are reset; after it they are read back, so every tool's own figure is checked against what the
# target actually served. See bench/README.md.
set -uo pipefail # not -e: one tool failing must not stop the others

usage() {
  cat <<EOF
usage: bench/http_throughput.sh [options]

  -d, --duration SECS     measured run per tool (default: \$DUR or 5)
  -w, --warmup SECS       warm-up per tool, not measured (default: \$WARMUP or 1)
  -c, --connections N     connections / VUs (default: \$CONNS or 50)
      --no-oha            skip oha (installing it takes ~4 min)
      --no-build          do not run cargo build --release
      --herd-bin PATH     herd binary to use (default: target/release/herd)
  -h, --help

Environment: TARGET_CPU (default 0), TOOL_CPU (default 1), OUT_DIR (raw outputs;
default bench/out/http_throughput-<time>).
EOF
}

DUR=${DUR:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-50}
NO_OHA=0
BUILD=1
HERD=${HERD_BIN:-}
TARGET_CPU=${TARGET_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}

while (($#)); do
  case $1 in
    -d | --duration) DUR=$2; shift ;;
    -w | --warmup) WARMUP=$2; shift ;;
    -c | --connections) CONNS=$2; shift ;;
    --no-oha) NO_OHA=1 ;;
    --no-build) BUILD=0 ;;
    --herd-bin) HERD=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for v in DUR WARMUP CONNS TARGET_CPU TOOL_CPU; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a whole number (got '${!v}')" >&2; exit 2; }
done
((DUR > 0 && CONNS > 0)) || { echo "duration and connections must be > 0" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PATH="$HOME/.cargo/bin:$PATH"
HERD=${HERD:-${CARGO_TARGET_DIR:-$ROOT/target}/release/herd}
OUT=${OUT_DIR:-$ROOT/bench/out/http_throughput-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

log() { echo "== $*" >&2; }
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get install -y "$@" >"$OUT/apt.log" 2>&1 ||
    { as_root apt-get update >>"$OUT/apt.log" 2>&1 && as_root apt-get install -y "$@" >>"$OUT/apt.log" 2>&1; }
}

# ---------------------------------------------------------------------------- tools
command -v taskset >/dev/null || { log "installing util-linux (taskset)"; apt_install util-linux; }
command -v curl >/dev/null || { log "installing curl"; apt_install curl; }
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  apt_install wrk || { echo "could not install wrk (see $OUT/apt.log)" >&2; exit 1; }
fi
if ((NO_OHA == 0)) && ! command -v oha >/dev/null; then
  log "installing oha with cargo install --locked oha (takes ~4 min; pass --no-oha to skip)"
  if ! cargo install --locked oha >"$OUT/oha-install.log" 2>&1; then
    log "oha install failed (see $OUT/oha-install.log): skipping oha"
    NO_OHA=1
  fi
fi

if ((BUILD)); then
  log "cargo build --release -p herd-coordinator"
  cargo build --release -p herd-coordinator || { echo "build failed" >&2; exit 1; }
fi
[[ -x $HERD ]] || { echo "no herd binary at $HERD" >&2; exit 1; }

if (($(nproc) < 2)); then
  log "only $(nproc) core(s): target and tools will share a core; numbers are not comparable"
  TOOL_CPU=$TARGET_CPU
fi

# ---------------------------------------------------------------------------- target
TARGET_PID=
cleanup() {
  if [[ -n $TARGET_PID ]] && kill -0 "$TARGET_PID" 2>/dev/null; then
    kill "$TARGET_PID" 2>/dev/null
    wait "$TARGET_PID" 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

taskset -c "$TARGET_CPU" "$HERD" target --listen 127.0.0.1:0 >"$OUT/target.stdout" 2>"$OUT/target.stderr" &
TARGET_PID=$!
URL=
for _ in $(seq 100); do
  line=$(grep -m 1 '^herd target listening on ' "$OUT/target.stdout" 2>/dev/null)
  if [[ -n $line ]]; then
    URL=${line#herd target listening on }
    break
  fi
  kill -0 "$TARGET_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $URL ]]; then
  echo "herd target did not start; its stderr:" >&2
  cat "$OUT/target.stderr" >&2
  exit 1
fi
log "target $URL on core $TARGET_CPU; tools on core $TOOL_CPU; $CONNS connections, ${DUR}s (+${WARMUP}s warm-up)"

reset_target() { curl -fsS -X POST "$URL/__reset" >/dev/null; }
target_requests() { curl -fsS "$URL/__stats" | grep -o '"requests":[0-9]*' | head -n 1 | cut -d: -f2; }
on_tool_core() { taskset -c "$TOOL_CPU" timeout $((DUR + WARMUP + 60)) "$@"; }

# Results per tool: RPS[tool] (tool's own figure), COUNT[tool] (requests the tool reports),
# SEEN[tool] (requests the target counted), STATUS[tool] (empty = ok, else why not).
declare -A RPS COUNT SEEN STATUS
TOOLS=()

measure() { # measure NAME: runs warm_NAME, resets, runs run_NAME, reads the target's count
  local name=$1
  TOOLS+=("$name")
  log "$name: warm-up ${WARMUP}s"
  ((WARMUP > 0)) && "warm_$name" >/dev/null 2>&1
  reset_target || { STATUS[$name]="could not reset the target"; return; }
  log "$name: measuring ${DUR}s"
  "run_$name"
  SEEN[$name]=$(target_requests)
  [[ -n ${STATUS[$name]:-} ]] && log "$name: ${STATUS[$name]}"
}

# -- wrk
warm_wrk() { on_tool_core wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$URL/fast"; }
run_wrk() {
  on_tool_core wrk -t1 -c"$CONNS" -d"${DUR}s" "$URL/fast" >"$OUT/wrk.txt" 2>&1 ||
    { STATUS[wrk]="wrk failed (see $OUT/wrk.txt)"; return; }
  RPS[wrk]=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/wrk.txt")
  COUNT[wrk]=$(awk '/ requests in / {print $1}' "$OUT/wrk.txt")
}

# -- oha
warm_oha() { on_tool_core oha -c "$CONNS" -z "${WARMUP}s" --no-tui --output-format quiet "$URL/fast"; }
run_oha() {
  on_tool_core oha -c "$CONNS" -z "${DUR}s" --no-tui --output-format json "$URL/fast" >"$OUT/oha.json" 2>"$OUT/oha.stderr" ||
    { STATUS[oha]="oha failed (see $OUT/oha.stderr)"; return; }
  local flat
  flat=$(tr -d ' \n\r\t' <"$OUT/oha.json") # oha pretty-prints its JSON
  RPS[oha]=$(grep -o '"requestsPerSec":[0-9.eE+-]*' <<<"$flat" | head -n 1 | cut -d: -f2)
  # Responses received, all status codes (requests aborted at the deadline are not in it).
  COUNT[oha]=$(grep -o '"statusCodeDistribution":{[^}]*}' <<<"$flat" |
    grep -o ':[0-9]*' | tr -d : | awk '{s += $1} END {print s + 0}')
}

# -- herd (standalone agent, constant VUs)
herd_spec() { # herd_spec SECONDS FILE
  cat >"$2" <<EOF
name: bench-http-throughput
target:
  url: $URL
scenario:
  - request: GET /fast
load:
  executor: constant-vus
  vus: $CONNS
  duration: ${1}s
EOF
}
warm_herd() {
  herd_spec "$WARMUP" "$OUT/herd-warmup.yaml"
  on_tool_core "$HERD" agent --json --standalone "$OUT/herd-warmup.yaml"
}
run_herd() {
  herd_spec "$DUR" "$OUT/herd.yaml"
  on_tool_core "$HERD" agent --json --standalone "$OUT/herd.yaml" >"$OUT/herd.txt" 2>"$OUT/herd.stderr"
  local rc=$? summary
  # stdout is the summary alone, laid out as summary.json: total.rps and total.requests.
  summary=$(grep '^{' "$OUT/herd.txt" | tail -n 1)
  if [[ -z $summary ]]; then
    STATUS[herd]="herd failed (exit $rc, no summary on stdout; see $OUT/herd.stderr)"
    return
  fi
  ((rc == 0)) || log "herd exited $rc but printed a summary"
  RPS[herd]=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["rps"])' <<<"$summary" 2>/dev/null)
  COUNT[herd]=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["requests"])' <<<"$summary" 2>/dev/null)
  [[ -n ${RPS[herd]} ]] || STATUS[herd]="herd's summary has no \"rps\" (see $OUT/herd.txt)"
}

measure wrk
if ((NO_OHA)); then
  log "oha: skipped"
  TOOLS+=(oha)
  STATUS[oha]="skipped (--no-oha, or its install failed)"
else
  measure oha
fi
measure herd

kill -0 "$TARGET_PID" 2>/dev/null || log "warning: the target died during the benchmark (see $OUT/target.stderr)"

# ---------------------------------------------------------------------------- report
# Ratios compare target-counted req/s, the one figure measured the same way for every tool.
target_rps() { [[ -n ${SEEN[$1]:-} ]] && awk -v n="${SEEN[$1]}" -v d="$DUR" 'BEGIN {printf "%.0f", n / d}'; }
ratio() { [[ -n $1 && -n $2 && $2 != 0 ]] && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
fmt_rps() { [[ -n $1 ]] && awk -v x="$1" 'BEGIN {printf "%.0f", x}'; }
WRK_T=$(target_rps wrk)
OHA_T=$( ((NO_OHA)) || target_rps oha)

{
  echo
  echo "HTTP/1.1 GET /fast, $CONNS connections, ${DUR}s per tool after ${WARMUP}s warm-up;"
  echo "target \`herd target\` on core $TARGET_CPU, tool on core $TOOL_CPU ($(nproc) cores, $(uname -r))."
  echo "req/s (target-counted) = requests the target counted during the run / ${DUR}s; ratios use it."
  echo
  echo "| tool | req/s (tool) | req/s (target-counted) | ratio vs wrk | ratio vs oha | requests: tool / target |"
  echo "| --- | ---: | ---: | ---: | ---: | --- |"
  for t in "${TOOLS[@]}"; do
    tr=$(target_rps "$t")
    if [[ ${STATUS[$t]:-} == skipped* ]]; then
      echo "| $t | skipped | | | | ${STATUS[$t]} |"
      continue
    elif [[ -n ${STATUS[$t]:-} ]]; then
      echo "| $t | failed | ${tr:-n/a} | n/a | n/a | ${STATUS[$t]} |"
      continue
    fi
    echo "| $t | $(fmt_rps "${RPS[$t]:-}" || echo n/a) | ${tr:-n/a} | $(ratio "$tr" "$WRK_T" || echo n/a)" \
      "| $(ratio "$tr" "$OHA_T" || echo n/a) | ${COUNT[$t]:-?} / ${SEEN[$t]:-?} |"
  done
  echo
  echo "Raw outputs: $OUT"
} | tee "$OUT/summary.md"

# Exit non-zero only when the reference tool itself failed.
[[ -z ${STATUS[wrk]:-} ]]
