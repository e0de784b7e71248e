#!/bin/bash
# Runs the HTTP caching conformance suite "cache-tests" (github.com/http-tests/cache-tests)
# against our proxy, in reverse and in forward mode, and prints the results by kind.
#
# The suite is not part of this repository: point CACHE_TESTS_DIR at a checkout
# (with its npm dependencies installed). Without it this script says so and exits 0.
#
#   CACHE_TESTS_DIR=/path/to/cache-tests tests/proxy/conformance/run_cache_tests.sh [reverse|forward|both] [TEST_ID]
#
# Reverse mode: proxy.mode = "reverse" in front of the suite's origin server; the
# suite's base URL is the proxy. Forward mode: the base URL is the origin and every
# request goes through the proxy as an absolute URI; the suite's client must honour
# FORWARD_PROXY (or HTTP_PROXY, as its node-fetch-with-proxy client does).
# Exit status: 1 if any required test fails, else 0.
set -u
SUITE=${CACHE_TESTS_DIR:-}
if [ -z "$SUITE" ] || [ ! -f "$SUITE/test-engine/cli.mjs" ] || [ ! -f "$SUITE/test-engine/server/server.mjs" ]; then
    echo "run_cache_tests: CACHE_TESTS_DIR is not a cache-tests checkout; skipped"
    exit 0
fi
command -v node >/dev/null || { echo "run_cache_tests: node not found; skipped"; exit 0; }
MODES=${1:-both}; [ "$MODES" = both ] && MODES="reverse forward"
TEST_ID=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/cache-tests-run.XXXXXX")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

status=0
for mode in $MODES; do
    origin_port=$(free_port); proxy_port=$(free_port)
    (cd "$SUITE" && npm_config_port=$origin_port npm_config_pidfile="$OUT/$mode-origin.pid" \
        exec node test-engine/server/server.mjs > "$OUT/$mode-origin.log" 2>&1) &
    PIDS+=($!)
    if [ "$mode" = reverse ]; then
        sets=(--set 'proxy.mode="reverse"' --set "proxy.origin=\"http://127.0.0.1:$origin_port\"")
        base=http://127.0.0.1:$proxy_port; via_proxy=
    else
        sets=(--set "proxy.allowed_ports=[$origin_port]")
        base=http://127.0.0.1:$origin_port; via_proxy=http://127.0.0.1:$proxy_port
    fi
    # The suite runs 50 tests at once, each on its own connections: lift the per-address cap.
    twistd -n --pidfile= -l "$OUT/$mode-proxy.log" netapps -d "$OUT/$mode-data" --services=proxy \
        --listen "proxy=tcp:$proxy_port:interface=127.0.0.1" \
        --set proxy.max_connections_per_address=1000 "${sets[@]}" &
    PIDS+=($!)
    wait_port "$origin_port" && wait_port "$proxy_port" || { echo "run_cache_tests: $mode: servers did not start"; exit 2; }
    (cd "$SUITE" && FORWARD_PROXY=$via_proxy HTTP_PROXY=$via_proxy npm_config_base=$base npm_config_id=$TEST_ID \
        node --no-warnings test-engine/cli.mjs) > "$OUT/$mode.json" 2> "$OUT/$mode.err"
    cleanup; PIDS=()
    if [ -n "$TEST_ID" ]; then
        cat "$OUT/$mode.json"
        continue
    fi
    echo "== $mode mode (results in $OUT/$mode.json)"
    node --input-type=module - "$SUITE" "$OUT/$mode.json" <<'JS' || status=1
const [suite, resultsFile] = process.argv.slice(2)
const fs = await import('fs')
const tests = (await import(`${suite}/tests/index.mjs`)).default
const { determineTestResult, resultTypes } = await import(`${suite}/test-engine/lib/results.mjs`)
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))
const names = new Map(Object.entries(resultTypes).map(([name, type]) => [type, name]))
const counts = {}
const notPassed = []
let requiredFailed = 0
for (const group of tests) {
  for (const test of group.tests) {
    if (!(test.id in results)) continue
    const kind = test.kind || 'required'
    const outcome = names.get(determineTestResult(tests, test.id, results))
    counts[kind] = counts[kind] || {}
    counts[kind][outcome] = (counts[kind][outcome] || 0) + 1
    if (outcome !== 'pass' && outcome !== 'yes') notPassed.push(`  ${kind} ${outcome} ${test.id}: ${JSON.stringify(results[test.id])}`)
    if (kind === 'required' && results[test.id] !== true) requiredFailed++
  }
}
console.log(`${Object.keys(results).length} tests run`)
for (const [kind, byOutcome] of Object.entries(counts)) console.log(`${kind}: ${JSON.stringify(byOutcome)}`)
notPassed.sort().forEach(line => console.log(line))
if (requiredFailed) { console.log(`${requiredFailed} required tests failed`); process.exit(1) }
JS
done
exit $status
