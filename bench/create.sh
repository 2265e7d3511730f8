#!/usr/bin/env bash
# Compares torrent creation speed: magnetget's torrentfile.Create (through BenchmarkCreate, as the
# `magnetget create` CLI does not exist yet), mktorrent and libtorrent's create_torrent, hashing
# the same file from the page cache with the same piece length. Runs are interleaved ROUNDS times,
# because the machine may be shared; best and median MiB/s are reported per tool, and the three
# infohashes of the last round must agree. CPU seconds (user+sys) per GiB hashed are reported too:
# on a busy machine they are steadier than wall-clock rates.
#
# Environment: SIZE (default 2G; K/M/G suffixes), FILE (default /tmp/magnetget-bench-$SIZE.bin,
# created when missing and kept for reuse; KEEP=0 deletes it afterwards), ROUNDS (default 3),
# LOG2 (piece length log2, default: what torrentfile.AutoPieceLength picks for SIZE).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE=${SIZE:-2G}
ROUNDS=${ROUNDS:-3}
FILE=${FILE:-/tmp/magnetget-bench-$SIZE.bin}
KEEP=${KEEP:-1}
PY=/usr/bin/python3
work=$(mktemp -d /tmp/magnetget-bench.XXXXXX)
trap 'rm -rf "$work"; [ "$KEEP" = 1 ] || rm -f "$FILE"' EXIT

bytes=$($PY -c 'import sys; s=sys.argv[1].upper(); m={"K":1<<10,"M":1<<20,"G":1<<30}
print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))' "$SIZE")
if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" != "$bytes" ]; then
	echo "writing $bytes bytes of random data to $FILE" >&2
	head -c "$bytes" /dev/urandom >"$FILE"
fi
if [ -z "${LOG2:-}" ]; then
	# torrentfile.AutoPieceLength: smallest power of two >= 16 KiB giving <= 2000 pieces, <= 16 MiB.
	LOG2=$($PY -c 'import sys; n=int(sys.argv[1]); l=14
while l < 24 and -(-n >> l) > 2000: l += 1
print(l)' "$bytes")
fi
pl=$((1 << LOG2))
echo "file $FILE ($bytes bytes), piece length 2^$LOG2 = $pl, $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"

go test -c -o "$work/torrentfile.test" ./torrentfile
cat "$FILE" >/dev/null # page cache, for every tool alike

mib=$($PY -c "print($bytes / 1048576)")
rate() { $PY -c "import sys; print('%.1f' % ($mib / float(sys.argv[1])))" "$1"; }
now() { date +%s.%N; }
elapsed() { $PY -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

ours=() mk=() lt=() ourscpu=() mkcpu=() ltcpu=()
TIMEFORMAT='%U %S'
gib=$($PY -c "print($bytes / 1073741824)")
# cpu FILE RUNS: user+sys seconds recorded by bash's time in FILE, per GiB, per run.
cpu() { $PY -c "import sys; u, s = open(sys.argv[1]).read().split()[-2:]; print('%.2f' % ((float(u) + float(s)) / float(sys.argv[2]) / $gib))" "$1" "$2"; }
for round in $(seq "$ROUNDS"); do
	# magnetget: BenchmarkCreate reports MiB/s of its 2 timed runs (after 1 untimed warm-up run,
	# so the process hashes the file 3 times: its CPU time is divided by 3).
	{ time MAGNETGET_BENCH_FILE="$FILE" MAGNETGET_BENCH_PIECE_LENGTH=$pl MAGNETGET_BENCH_OUT="$work/ours.torrent" \
		"$work/torrentfile.test" -test.run='^$' -test.bench='^BenchmarkCreate$' -test.benchtime=2x >"$work/ours.out"; } 2>"$work/ours.time"
	ours+=("$(awk '/MiB\/s/ { for (i = 1; i < NF; i++) if ($(i+1) == "MiB/s") print $i }' "$work/ours.out")")
	ourscpu+=("$(cpu "$work/ours.time" 3)")

	t0=$(now)
	{ time mktorrent -l "$LOG2" -d -t "$(nproc)" -o "$work/mk.torrent.new" "$FILE" >/dev/null; } 2>"$work/mk.time"
	t1=$(now)
	mv -f "$work/mk.torrent.new" "$work/mk.torrent"
	mk+=("$(rate "$(elapsed "$t0" "$t1")")")
	mkcpu+=("$(cpu "$work/mk.time" 1)")

	{ time $PY - "$FILE" "$pl" "$work/lt.torrent" "$mib" >"$work/lt.out" <<'PYEOF'
import os, sys, time, libtorrent as lt
path, pl, out, mib = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
fs = lt.file_storage()
fs.add_file(os.path.basename(path), os.path.getsize(path))
ct = lt.create_torrent(fs, pl, flags=lt.create_torrent.v1_only)
t0 = time.perf_counter()
lt.set_piece_hashes(ct, os.path.dirname(path))
t1 = time.perf_counter()
open(out, "wb").write(lt.bencode(ct.generate()))
print("%.1f" % (mib / (t1 - t0)))
PYEOF
	} 2>"$work/lt.time"
	lt+=("$(cat "$work/lt.out")")
	ltcpu+=("$(cpu "$work/lt.time" 1)")
	echo "round $round: magnetget ${ours[-1]} MiB/s (${ourscpu[-1]} CPU s/GiB)," \
		"mktorrent ${mk[-1]} MiB/s (${mkcpu[-1]})," \
		"libtorrent ${lt[-1]} MiB/s (${ltcpu[-1]}, includes python start-up)"
done

summary() {
	$PY -c 'import sys, statistics as st; n=int(sys.argv[2]); v=[float(x) for x in sys.argv[3:3+n]]; c=[float(x) for x in sys.argv[3+n:]]
print("%-10s best %8.1f MiB/s   median %8.1f MiB/s   CPU min %.2f median %.2f s/GiB" % (sys.argv[1], max(v), st.median(v), min(c), st.median(c)))' "$@"
}
summary magnetget "$ROUNDS" "${ours[@]}" "${ourscpu[@]}"
summary mktorrent "$ROUNDS" "${mk[@]}" "${mkcpu[@]}"
summary libtorrent "$ROUNDS" "${lt[@]}" "${ltcpu[@]}"

hashes=$(for f in ours mk lt; do
	$PY -c 'import sys, libtorrent as lt; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' "$work/$f.torrent"
done | sort -u)
if [ "$(echo "$hashes" | wc -l)" != 1 ]; then
	echo "INFOHASHES DIFFER:" $hashes >&2
	exit 1
fi
echo "infohash (all three agree): $hashes"
