#!/usr/bin/env bash
# Runs the `magnetget meta` benchmarks of bench/meta (see bench/meta/README.md):
#   BenchmarkMetaLatency  magnet -> written .torrent, process start to done, for magnetget (cold and
#                         warm data dir), libtorrent and aria2c, small and ~4 MiB info dicts, 1 and 8
#                         seeders, on one 256-node loopback DHT; p50/p95 per client and ratios.
#   BenchmarkMetaBatch    200 magnets through one `magnetget meta --from FILE`: metadata per minute.
# Everything runs on loopback (127.0.0.0/8). The default run takes about 3 minutes on 2 cores.
#
# Environment: BENCH (regexp of benchmarks to run, default .), and the knobs the benchmarks read:
# META_NODES (256), META_ROUNDS (5), META_ARIA2_ROUNDS (2), META_SEEDERS ("1 8"),
# META_LARGE_BYTES (4194304), META_CLIENTS ("magnetget libtorrent aria2"), META_TIMEOUT (60 s a run),
# META_BATCH (200), META_BATCH_HOSTS (4), META_BATCH_ARGS ("|--dht-rate -1": one extra-flags set per
# batch run). Extra arguments are passed to `go test` (e.g. -v, -cpuprofile).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v aria2c >/dev/null || echo "aria2c is not installed: its column stays empty" >&2
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || echo "python3-libtorrent is not installed: its column stays empty" >&2
echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec go test -run '^$' -bench "${BENCH:-.}" -benchtime 1x -timeout 30m "$@" ./bench/meta/
