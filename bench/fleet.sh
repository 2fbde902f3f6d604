#!/usr/bin/env bash
# A fleet of N agents through one coordinator: `herd run` with N real agents (each its own MQTT
# client, keys, handshake, engine and per-second batches), hosted --agents-per-process to a
# process, against `herd target`, through the embedded broker and through mosquitto. For each
# size and broker it records what a fleet is judged by: launch → all Ready and start skew, the
# coordinator's CPU and peak RSS, how far batches and the live view ran behind the clock, and
# whether every request the target served was counted. See bench/README.md.
set -uo pipefail # not -e: one size failing must not stop the others

usage() {
  cat <<EOF
usage: bench/fleet.sh [options] [N ...]        (default N: 100 1000 5000)

  -d, --duration SECS       load per run (default: \$DUR or 20)
  -r, --rate R              iterations/s per agent (default: \$RATE or 1; 3 requests each)
  -p, --per-process K       agents per process (default: \$PER_PROCESS or 100)
  -b, --brokers LIST        embedded,mosquitto (default: both; mosquitto only if installed)
      --no-build            do not run cargo build --release
      --herd-bin PATH       herd binary (default: target/release/herd)
  -h, --help

Each iteration requests GET /fast, GET /delay/20 and GET /status/404 (labels fast, slow,
missing: three latencies and two statuses in every batch). Output: a markdown table on stdout
and in OUT_DIR/summary.md, one JSON line per run in OUT_DIR/runs.jsonl (default OUT_DIR:
bench/out/fleet-<time>). Exit 1 if any run was not exact.
EOF
}

DUR=${DUR:-20}
RATE=${RATE:-1}
PER_PROCESS=${PER_PROCESS:-100}
BROKERS=embedded,mosquitto
BUILD=1
HERD=${HERD_BIN:-}
SIZES=()

while (($#)); do
  case $1 in
    -d | --duration) DUR=$2; shift ;;
    -r | --rate) RATE=$2; shift ;;
    -p | --per-process) PER_PROCESS=$2; shift ;;
    -b | --brokers) BROKERS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --herd-bin) HERD=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) SIZES+=("$1") ;;
  esac
  shift
done
((${#SIZES[@]})) || SIZES=(100 1000 5000)
for val in "$DUR" "$RATE" "$PER_PROCESS" "${SIZES[@]}"; do
  [[ $val =~ ^[0-9]+$ ]] && ((val > 0)) || { echo "durations, rates and sizes are whole numbers > 0 (got '$val')" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PATH="$HOME/.cargo/bin:$PATH"
HERD=${HERD:-${CARGO_TARGET_DIR:-$ROOT/target}/release/herd}
OUT=${OUT_DIR:-$ROOT/bench/out/fleet-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { echo "== $*" >&2; }

if ((BUILD)); then
  log "cargo build --release -p herd-coordinator"
  cargo build --release -p herd-coordinator || { echo "build failed" >&2; exit 1; }
fi
[[ -x $HERD ]] || { echo "no herd binary at $HERD" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
# http METHOD URL: the body on stdout (python3 rather than curl: one dependency fewer).
http() { python3 -c 'import sys, urllib.request as u; print(u.urlopen(u.Request(sys.argv[2], method=sys.argv[1], data=b"" if sys.argv[1] == "POST" else None), timeout=10).read().decode())' "$@"; }
MOSQUITTO=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
# Every agent holds an MQTT connection and a VU connection; the broker and the target the other
# ends: ~4 descriptors per agent across the processes of this machine.
ulimit -n "$(ulimit -Hn)" 2>/dev/null

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------------------- target
"$HERD" target --listen 127.0.0.1:0 >"$OUT/target.stdout" 2>"$OUT/target.stderr" &
PIDS+=($!)
URL=
for _ in $(seq 100); do
  line=$(grep -m 1 '^herd target listening on ' "$OUT/target.stdout" 2>/dev/null)
  [[ -n $line ]] && { URL=${line#herd target listening on }; break; }
  sleep 0.1
done
[[ -n $URL ]] || { echo "herd target did not start:" >&2; cat "$OUT/target.stderr" >&2; exit 1; }

TICK=$(getconf CLK_TCK)
# sample PID FILE: every 0.5 s until PID exits, "unix_ns utime stime rss_kb" lines (its own
# CPU, not its children's: the agents are not the coordinator).
sample() {
  local pid=$1 file=$2
  while [[ -r /proc/$pid/stat ]]; do
    local st rss
    st=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || break
    rss=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    [[ -n $st ]] && echo "$(date +%s%N) $st ${rss:-0}" >>"$file"
    sleep 0.5
  done
}

fails=0
echo '' >"$OUT/runs.jsonl"
for n in "${SIZES[@]}"; do
  for broker in ${BROKERS//,/ }; do
    run_dir="$OUT/n$n-$broker"
    mkdir -p "$run_dir"
    args=()
    mpid=
    if [[ $broker == mosquitto ]]; then
      [[ -n $MOSQUITTO ]] || { log "mosquitto not installed: skipped"; continue; }
      port=$(free_port)
      # No queue cap (it drops QoS 1 past 1000 by default) and room for the fleet's connections.
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_connections -1\npersistence false\n' \
        "$port" >"$run_dir/mosquitto.conf"
      "$MOSQUITTO" -c "$run_dir/mosquitto.conf" >"$run_dir/mosquitto.log" 2>&1 &
      mpid=$!
      PIDS+=("$mpid")
      sleep 0.5
      args=(--broker "mqtt://127.0.0.1:$port")
    fi
    vus=$((n * 2))
    cat >"$run_dir/fleet.yaml" <<EOF
name: fleet-$n
target: {url: "$URL"}
scenario:
  - {name: fast, request: GET /fast}
  - {name: slow, request: GET /delay/20}
  - {name: missing, request: GET /status/404}
load: {executor: constant-arrival-rate, rate: $((n * RATE)), duration: ${DUR}s, pre_allocated_vus: $vus}
EOF
    http POST "$URL/__reset" >/dev/null || { echo "could not reset the target" >&2; exit 1; }
    log "N=$n via $broker: $((n * RATE)) iterations/s for ${DUR}s, $PER_PROCESS agents a process"
    start=$(date +%s%N)
    "$HERD" run "$run_dir/fleet.yaml" --agents "$n" --agents-per-process "$PER_PROCESS" --quiet \
      --results-dir "$run_dir/results" "${args[@]}" >"$run_dir/stdout" 2>"$run_dir/stderr" &
    hpid=$!
    sample "$hpid" "$run_dir/coordinator.samples" &
    spid=$!
    [[ -n $mpid ]] && { sample "$mpid" "$run_dir/broker.samples" & }
    wait "$hpid"
    code=$?
    wall=$((($(date +%s%N) - start) / 1000000))
    wait "$spid" 2>/dev/null
    seen=$(http GET "$URL/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
    if [[ -n $mpid ]]; then kill "$mpid" 2>/dev/null; wait "$mpid" 2>/dev/null; fi
    python3 - "$run_dir" "$n" "$broker" "$code" "$wall" "$seen" "$TICK" "$DUR" "$RATE" >>"$OUT/runs.jsonl" <<'PY'
import glob, json, sys
d, n, broker, code, wall, seen, tick, dur, rate = sys.argv[1:]
n, code, wall, seen, tick, dur, rate = int(n), int(code), int(wall) / 1000, int(seen), int(tick), int(dur), int(rate)
def cpu(path):
    rows = []
    try:
        for line in open(path):
            t, user, system, rss = line.split()
            rows.append((int(t) / 1e9, int(user) + int(system), int(rss)))
    except FileNotFoundError:
        return None
    if len(rows) < 2:
        return None
    (t0, c0, _), (t1, c1, _) = rows[0], rows[-1]
    peak = max(((b[1] - a[1]) / tick) / (b[0] - a[0]) for a, b in zip(rows, rows[1:]) if b[0] > a[0])
    return {"avg_pct": round(100 * (c1 - c0) / tick / (t1 - t0)), "peak_pct": round(100 * peak),
            "rss_mb": round(max(r[2] for r in rows) / 1024)}
out = {"n": n, "broker": broker, "exit": code, "wall_s": round(wall, 1), "target_requests": seen,
       "coordinator": cpu(f"{d}/coordinator.samples"), "broker_process": cpu(f"{d}/broker.samples")}
summaries = glob.glob(f"{d}/results/*/summary.json")
if summaries:
    s = json.load(open(summaries[0]))
    t = s.get("timing", {})
    out.update({
        "state": s["state"], "agents_lost": s["agents_lost"], "start_skew_ms": s["start_skew_ms"],
        "ready_ms": t.get("ready_ms"), "intake_lag_ms": t.get("intake_lag_ms"), "live_lag_ms": t.get("live_lag_ms"),
        "requests": s["total"]["requests"], "dropped_iterations": s["total"]["dropped_iterations"],
        "late_batches": s["late_batches"],
    })
    # Exact: herd counted what the target served, and with the iterations no VU could take
    # (3 requests each), the whole planned load.
    planned = n * rate * dur * 3
    out["exact"] = (s["total"]["requests"] == seen and seen + 3 * s["total"]["dropped_iterations"] == planned
                    and s["agents_lost"] == 0)
else:
    out["exact"] = False
print(json.dumps(out))
PY
    tail -n 1 "$OUT/runs.jsonl" | grep -q '"exact": true' || fails=$((fails + 1))
  done
done

python3 - "$OUT/runs.jsonl" <<'PY' | tee "$OUT/summary.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| agents | broker | all Ready | start skew | batch lag p50 / p99 / max | live lag max | coordinator CPU avg / peak | coordinator RSS | broker CPU avg | requests (herd = target) | dropped | exact |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
ms = lambda v: "—" if v is None else f"{v / 1000:.1f} s" if v >= 1000 else f"{v} ms"
for r in rows:
    c, b = r.get("coordinator") or {}, r.get("broker_process") or {}
    il, ll = r.get("intake_lag_ms") or {}, r.get("live_lag_ms") or {}
    lag = f"{ms(il.get('p50'))} / {ms(il.get('p99'))} / {ms(il.get('max'))}" if il else "—"
    print(f"| {r['n']:,} | {r['broker']} | {ms(r.get('ready_ms'))} | {ms(r.get('start_skew_ms'))} | {lag} | "
          f"{ms(ll.get('max'))} | {c.get('avg_pct', '—')} % / {c.get('peak_pct', '—')} % | {c.get('rss_mb', '—')} MB | "
          f"{b.get('avg_pct', '—') if b else '(in the coordinator)'}{' %' if b else ''} | "
          f"{r.get('requests', '—'):,} {'=' if r.get('requests') == r['target_requests'] else '≠'} {r['target_requests']:,} | "
          f"{r.get('dropped_iterations', '—')} | {'yes' if r.get('exact') else 'NO'} |")
PY
log "raw results in $OUT"
((fails == 0)) || { echo "$fails run(s) not exact" >&2; exit 1; }
