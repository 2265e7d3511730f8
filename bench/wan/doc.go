// Package wan holds benchmarks of magnetget over emulated wide-area links (internal/netem), the
// numbers that the DHT cold-start and swarm pipelining work is measured against. It has no
// non-test code; run it with bench/wan.sh (or `go test -run '^$' -bench . -benchtime 1x
// ./bench/wan/`); a plain `go test` runs only the quick check of its seeders.
//
// Vocabulary: a "node" is a DHT (UDP) endpoint, a "peer" a BitTorrent (TCP) endpoint; a
// profile (dhttest.Healthy, dhttest.Mainline) is the condition of the DHT; "efficiency" is the
// ideal time (size / the sum of the peers' caps) over the measured time.
//
// BenchmarkDHTStart: a dhttest network under a profile with metadata seeders announced in it;
// per round a fresh in-process client (a read-only dht.Set of one node, its socket behind the
// profile's access link) joins from one entry node and looks the torrent up through a
// peersource.Source, as cmd/magnetget does for `meta`: the lookup starts at once with the walk
// beside it, "cold" (empty table) and "warm" (the routing.db the cold run saved). It reports the time
// from start to the first peer and to the info dict (metadata.Fetch).
//
// BenchmarkWANDownload: real in-process swarm seeders behind netem listeners (a delay line and
// a token bucket per peer) serve a payload to one downloader: 8 peers × 8 MiB/s at 40 ms RTT and
// 2 peers × 40 MiB/s at 100 ms RTT; magnetget's swarm and, when python3-libtorrent is installed,
// libtorrent download from the same seeders in the same run. 64 MiB by default; `-args
// -wan.mib=1024` for 1 GiB.
package wan
