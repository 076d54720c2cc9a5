#!/usr/bin/env bash
# The browser engine beside the HTTP engine on one portal and the same
# licences: rate used, portal requests a licence, logins, peak memory of the
# whole process tree (PSS: sip-rotate and every Chromium process), CPU.
#
#   cargo build --release && benches/engines.sh [LICENCES] [LATENCY_MS] [RATE] [CONCURRENCY]
#
# Defaults: 53 licences, 20 ms, --rate 20, --concurrency 8. Not a test:
# nothing here is run by CI. Needs chromium (apt-get install chromium).
# ONLY_BROWSER=1 measures the scripted portal alone; SIP_ROTATE_BENCH_FLAGS adds
# flags to the run (e.g. "--browser /path/to/wrapper"). A run still going
# after SIP_ROTATE_BENCH_TIMEOUT seconds (300) is ended: its row shows fewer
# resets than licences instead of the bench hanging.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SIP_ROTATE_BENCH_RUN:-target/release/sip-rotate}
licences=${1:-53}
latency=${2:-20}
rate=${3:-20}
concurrency=${4:-8}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# Resident memory shared fairly (PSS) of a process and all its descendants, in KiB.
tree_pss() {
  local pids=("$1") all=() i=0
  while ((i < ${#pids[@]})); do
    local p=${pids[i]}
    all+=("$p")
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do pids+=("$c"); done
    i=$((i + 1))
  done
  local sum=0
  for p in "${all[@]}"; do
    local v
    v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# CPU seconds (user + system) of a process tree, from /proc/PID/stat.
tree_cpu_ticks() {
  local pids=("$1") i=0 sum=0
  while ((i < ${#pids[@]})); do
    local p=${pids[i]}
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do pids+=("$c"); done
    local t
    t=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)
    sum=$((sum + ${t:-0}))
    i=$((i + 1))
  done
  echo "$sum"
}

measure() {
  local name=$1 shape=$2 engine=$3
  local dir=$work/$name
  mkdir -p "$dir"
  local clients=$(((licences + 7) / 8))
  SIM_LOGIN=bench SIM_PASSWORD=bench-pw "$bin" sim --listen 127.0.0.1:0 \
    --clients "$clients" --licences-per-client 8 --latency-ms "$latency" \
    --truth "$dir/truth.jsonl" --dataset-out "$dir/dataset.csv" ${shape:+--shape "$shape"} \
    >"$dir/sim.out" 2>"$dir/sim.err" &
  local sim=$!
  while ! grep -q listening "$dir/sim.out" 2>/dev/null; do sleep 0.05; done
  local url
  url=$(sed 's/listening on //' "$dir/sim.out")
  # The first LICENCES licences of the dataset, one row each.
  { echo "client_ref,licence"; awk -F, 'NR > 1 {print $1 "," $3}' "$dir/dataset.csv" | head -n "$licences"; } >"$dir/in.csv"
  local key
  key=$("$bin" keygen -o "$dir/id.txt" 2>/dev/null)
  local start end peak=0 cpu=0
  start=$(date +%s.%N)
  MYOPENIP_PASSWORD=bench-pw XDG_STATE_HOME=$dir/state timeout "${SIP_ROTATE_BENCH_TIMEOUT:-300}" "$bin" run --input "$dir/in.csv" \
    --portal "$url/" --login bench -r "$key" -o "$dir/out.age" --yes --quiet \
    --rate "$rate" --concurrency "$concurrency" --engine "$engine" ${SIP_ROTATE_BENCH_FLAGS:-} --report "$dir/report.csv" \
    >"$dir/run.out" 2>"$dir/run.err" &
  local run=$!
  while kill -0 "$run" 2>/dev/null; do
    local pss ticks
    pss=$(tree_pss "$run")
    ((pss > peak)) && peak=$pss
    ticks=$(tree_cpu_ticks "$run")
    ((ticks > cpu)) && cpu=$ticks
    sleep 0.25
  done
  wait "$run" || true
  end=$(date +%s.%N)
  kill -TERM "$sim"
  wait "$sim" 2>/dev/null || true
  local requests logins resets
  requests=$(awk -F': ' '/^requests.total:/ {print $2}' "$dir/sim.err")
  logins=$(awk -F': ' '/^logins:/ {print $2}' "$dir/sim.err")
  resets=$(wc -l <"$dir/truth.jsonl")
  awk -v n="$name" -v l="$licences" -v r="$requests" -v lg="$logins" -v rs="$resets" \
    -v s="$start" -v e="$end" -v rate="$rate" -v p="$peak" -v c="$cpu" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {
       t = e - s;
       printf "| %s | %d | %d | %.2f | %d | %.1f s | %.0f%% | %.0f MiB | %.1f s |\n",
         n, l, rs, r / l, lg, t, 100 * (r / t) / rate, p / 1024, c / hz
     }'
}

echo "| case | licences | resets | requests a licence | logins | elapsed | of --rate | peak PSS (tree) | CPU |"
echo "|---|---|---|---|---|---|---|---|---|"
if [ -z "${ONLY_BROWSER:-}" ]; then measure "plain portal, auto (http)" "" auto; fi
# The unchanged command: HTTP resolves, the canary's walk moves to the browser.
measure "scripted portal, auto" scripted auto
# Every step in the browser, resolution too.
measure "scripted portal, browser" scripted browser
