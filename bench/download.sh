#!/usr/bin/env bash
# Compares downloading one file over loopback TCP with magnetget, aria2c and python3-libtorrent
# (TCP only), from 1 and from 4 seeders, in the same run, so the three share one machine state.
#
# Seeders are `magnetget seed` processes on 127.0.0.1 (distinct ports: the tracker hands out the
# address announces come from) that announce to a local opentracker (their DHT is pointed at a
# dead loopback port). Every downloader gets the same .torrent (piece length 1 MiB, that
# tracker) and finds the seeders through it, so no client gets a head start. Each download runs
# under bench/download/measure.py: wall time from process start to exit (magnetget fsyncs the
# file before it exits; aria2 and libtorrent leave the writeback to the kernel), user+sys CPU,
# "Maximum resident set size" (ru_maxrss, what /usr/bin/time -v prints; it counts file pages a
# client maps, e.g. libtorrent's mmap storage) and the peak of anonymous memory (RssAnon sampled
# every 20 ms). Every download is compared with the original byte for byte. Per seeder count,
# one unrecorded warm-up download goes first and the client order rotates between rounds.
#
# Environment: SIZE (default 1G; K/M/G suffixes), SEEDERS (default "1 4"), ROUNDS (default 1:
# downloads per client and seeder count; the table shows medians), WORK (parent directory for
# data and downloads, default /tmp: a real disk; /dev/shm takes the disk out), CLIENTS (default
# "magnetget aria2 libtorrent"), MG_WRAP (a command prefix for magnetget only, e.g. a profiler),
# MEASURE_TIMEOUT (seconds before a download counts as failed, default 600).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
SEEDERS=${SEEDERS:-1 4}
ROUNDS=${ROUNDS:-1}
CLIENTS=${CLIENTS:-magnetget aria2 libtorrent}
PY=/usr/bin/python3
here=$PWD/bench/download
for tool in aria2c opentracker; do
	command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
$PY -c 'import libtorrent' || { echo "python3-libtorrent is not installed" >&2; exit 1; }

work=$(mktemp -d "${WORK:-/tmp}/magnetget-dl.XXXXXX")
chmod 755 "$work" # opentracker chroots here and runs as nobody
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

bytes=$($PY -c 'import sys; s=sys.argv[1].upper(); m={"K":1<<10,"M":1<<20,"G":1<<30}
print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))' "$SIZE")
echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $bytes bytes in $work" >&2

go build -o "$work/mg" ./cmd/magnetget
mkdir -p "$work/seed"
data=$work/seed/big.bin
head -c "$bytes" /dev/urandom >"$data"

# A port free for TCP and UDP on 127.0.0.1 for opentracker (it serves both on one number).
port=$($PY -c 'import socket
for _ in range(50):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: t.close(); u.close()')
torrent=$work/big.torrent
"$work/mg" create --piece-length 1M -t "http://127.0.0.1:$port/announce" -o "$torrent" "$data" >/dev/null 2>&1
ih=$($PY -c 'import sys, libtorrent as lt; print(lt.torrent_info(sys.argv[1]).info_hash())' "$torrent")
echo "$ih" >"$work/whitelist.txt"
opentracker -i 127.0.0.1 -p "$port" -P "$port" -d "$work" -w /whitelist.txt >/dev/null 2>&1 &
pids+=($!)

# start_seeders N: N magnetget seeders, each verified and serving on return.
seeder_pids=()
start_seeders() {
	local i
	for ((i = 1; i <= $1; i++)); do
		"$work/mg" seed --torrent "$torrent" --listen /ip4/127.0.0.1/tcp/0 --bootstrap /ip4/127.0.1.250/udp/9 \
			--data-dir "$work/sd$i" --status-addr /ip4/127.0.0.1/tcp/0 "$data" \
			>"$work/seeder$i.out" 2>"$work/seeder$i.err" &
		seeder_pids+=($!)
		pids+=($!)
	done
	for ((i = 1; i <= $1; i++)); do
		local url="" t
		for t in $(seq 300); do
			url=$(sed -n 's|^status on \(http://[^ ]*\)/metrics$|\1/|p' "$work/seeder$i.err")
			if [ -n "$url" ] && curl -sf "$url" | $PY -c 'import sys, json
sys.exit(0 if json.load(sys.stdin).get("verified_bytes") == float(sys.argv[1]) else 1)' "$bytes"; then
				break
			fi
			url=""
			sleep 0.1
		done
		[ -n "$url" ] || { echo "seeder $i did not become ready:" >&2; cat "$work/seeder$i.err" >&2; exit 1; }
	done
}

stop_seeders() {
	for p in "${seeder_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	seeder_pids=()
}

# download CLIENT OUTDIR RESULT
download() {
	local out=$2
	mkdir -p "$out"
	case $1 in
	magnetget)
		$PY "$here/measure.py" "$3" ${MG_WRAP:-} "$work/mg" get "$torrent" -o "$out" --listen /ip4/127.0.9.1/udp/0 \
			--bootstrap-file /dev/null --data-dir "$work/mgdata" >/dev/null 2>"$work/client.err"
		;;
	aria2)
		$PY "$here/measure.py" "$3" aria2c -d "$out" --seed-time=0 --enable-dht=false --enable-dht6=false \
			--bt-enable-lpd=false --enable-peer-exchange=false --disable-ipv6=true --file-allocation=none \
			--listen-port=49152-65000 --console-log-level=warn --summary-interval=0 --bt-max-peers=55 \
			--no-conf=true --log="$work/aria2.log" --log-level=info "$torrent" >/dev/null 2>"$work/client.err"
		;;
	libtorrent)
		$PY "$here/measure.py" "$3" $PY "$here/lt_get.py" "$torrent" "$out" 127.0.9.2 >/dev/null 2>"$work/client.err"
		;;
	esac
}

results=$work/results.tsv
: >"$results"
for n in $SEEDERS; do
	start_seeders "$n"
	# One unrecorded download first: the first transfer after the seeders start is always
	# slower (cold caches), whichever client makes it. Rounds then rotate the client order.
	clients=($CLIENTS)
	sync
	download "${clients[0]}" "$work/out" "$work/r.json" || true
	rm -rf "$work/out" "$work/mgdata" "$work/aria2.log"
	for r in $(seq "$ROUNDS"); do
		k=$(( (r - 1) % ${#clients[@]} ))
		for c in "${clients[@]:k}" "${clients[@]:0:k}"; do
			sync # earlier downloads' dirty pages must not be written back during this one
			out=$work/out
			if ! download "$c" "$out" "$work/r.json"; then
				echo "$c with $n seeders failed:" >&2
				cat "$work/client.err" >&2
				[ ! -f "$work/aria2.log" ] || tail -n 40 "$work/aria2.log" >&2
				exit 1
			fi
			cmp "$data" "$out/big.bin" || { echo "$c: download differs from the original" >&2; exit 1; }
			$PY -c 'import json, sys
r = json.load(open(sys.argv[1])); print("\t".join([sys.argv[2], sys.argv[3],
    str(r["wall"]), str(r["user"] + r["sys"]), str(r["maxrss_kib"]), str(r["peak_anon_kib"])]))' \
				"$work/r.json" "$c" "$n" >>"$results"
			echo "seeders=$n round $r $c: wall, CPU, max RSS KiB, peak anon KiB: $(tail -n1 "$results" | cut -f3-)" >&2
			[ "$c" != magnetget ] || tail -n1 "$work/client.err" >&2 # magnetget's own "done in"
			rm -rf "$out" "$work/mgdata" "$work/aria2.log"
		done
	done
	stop_seeders
done

$PY - "$results" "$bytes" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
mib, gib = int(sys.argv[2]) / 2**20, int(sys.argv[2]) / 2**30
by = {}
for c, n, wall, cpu, rss, anon in rows:
    by.setdefault((c, n), []).append((float(wall), float(cpu), int(rss), int(anon)))
med = {k: [statistics.median(x[i] for x in v) for i in range(4)] for k, v in by.items()}
print(f"| seeders | client | MiB/s | CPU s (user+sys) | CPU s/GiB | max RSS MiB | peak anon MiB |")
print("|---|---|---|---|---|---|---|")
for (c, n), (wall, cpu, rss, anon) in sorted(med.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
    print(f"| {n} | {c} | {mib / wall:.0f} | {cpu:.2f} | {cpu / gib:.2f} | {rss / 1024:.1f} | {anon / 1024:.1f} |")
for n in sorted({n for _, n in med}, key=int):
    mg, lt, ar = med.get(("magnetget", n)), med.get(("libtorrent", n)), med.get(("aria2", n))
    if mg and lt:
        print(f"seeders={n}: magnetget throughput / libtorrent = {lt[0] / mg[0]:.2f}x; CPU magnetget / libtorrent = {mg[1] / lt[1]:.2f}")
    if mg and ar:
        print(f"seeders={n}: magnetget throughput / aria2 = {ar[0] / mg[0]:.2f}x; CPU magnetget / aria2 = {mg[1] / ar[1]:.2f}")
EOF
