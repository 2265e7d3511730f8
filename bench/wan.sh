#!/usr/bin/env bash
# WAN benchmarks (bench/wan): DHT start-up under the healthy and mainline profiles, and downloads
# from seeders behind emulated links. Extra arguments go to the test binary, e.g.
#   bench/wan.sh -wan.mib=1024          # the 1 GiB download
#   BENCH=DHTStart WAN_ROUNDS=5 bench/wan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -run '^$' -bench "${BENCH:-.}" -benchtime 1x -timeout 60m -v ./bench/wan/ -args "$@"
