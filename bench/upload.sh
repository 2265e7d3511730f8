#!/usr/bin/env bash
# Upload throughput of one `magnetget seed` to four `magnetget get` downloaders at once, on loopback.
# Reports the wall time until all four are complete, the aggregate download rate, and how many bytes
# the seeder itself uploaded (the downloaders also trade pieces with each other).
# Environment: SIZE_MIB (default 512), N (downloaders, default 4), DIR (work dir, default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${SIZE_MIB:-512}
n=${N:-4}
work=${DIR:-$(mktemp -d)}
mkdir -p "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -z "${DIR:-}" ] && rm -rf "$work"' EXIT

go build -o "$work/mg" ./cmd/magnetget
mkdir -p "$work/share"
head -c "$((size_mib << 20))" /dev/urandom >"$work/share/payload.bin"
echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); ${size_mib} MiB to $n downloaders" >&2

"$work/mg" seed "$work/share/payload.bin" -o "$work/payload.torrent" --print-peer \
	--listen /ip4/127.0.60.1/udp/0 --bootstrap-file /dev/null --data-dir "$work/seed-data" \
	--status-addr /ip4/127.0.60.1/tcp/0 >"$work/seed.out" 2>"$work/seed.err" &
for _ in $(seq 1 600); do grep -q '^magnet:' "$work/seed.out" 2>/dev/null && break; sleep 0.1; done
magnet=$(grep '^magnet:' "$work/seed.out")
status=$(sed -n 's|^status on \(http://[^ ]*\)/metrics|\1|p' "$work/seed.err")

start=$(date +%s.%N)
pids=()
for i in $(seq 1 "$n"); do
	/usr/bin/time -f "%e s wall, %U+%S s CPU, %M KiB max RSS" -o "$work/get$i.time" \
		"$work/mg" get "$magnet" -o "$work/dl$i" --listen "/ip4/127.0.61.$i/udp/0" \
		--bootstrap-file /dev/null --data-dir "$work/get$i-data" >/dev/null 2>"$work/get$i.err" &
	pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
end=$(date +%s.%N)
[ "$fail" = 0 ] || { echo "a downloader failed:"; cat "$work"/get*.err; exit 1; }
for i in $(seq 1 "$n"); do cmp -s "$work/share/payload.bin" "$work/dl$i/payload.bin" || { echo "dl$i differs"; exit 1; }; done

up=$(curl -s "$status/" | sed -n 's/.*"uploaded_bytes_total":\([0-9.e+]*\).*/\1/p')
awk -v s="$start" -v e="$end" -v mib="$size_mib" -v n="$n" -v up="${up:-0}" 'BEGIN {
	t = e - s
	printf "all %d complete in %.2f s: %.0f MiB/s delivered in total (%.0f MiB/s per downloader)\n", n, t, n*mib/t, mib/t
	printf "the seeder uploaded %.0f MiB (%.2f of the %d copies delivered", up/1048576, up/1048576/mib, n
	printf (up/1048576 < n*mib - 1 ? "; the rest the downloaders traded among themselves)\n" : ")\n")
}'
for i in $(seq 1 "$n"); do echo "downloader $i: $(cat "$work/get$i.time")"; done
