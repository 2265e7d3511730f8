// Package meta holds benchmarks of `magnetget meta` (magnet -> metadata ->
// .torrent) against aria2c and python3-libtorrent, all on one loopback DHT.
// It has no non-test code: the benchmarks live in _test.go files and run
// with bench/meta.sh (or `go test -run '^$' -bench . -benchtime 1x
// ./bench/meta/`); a plain `go test` only runs the seeder's unit test.
//
// Vocabulary, as in the rest of the repository: a "node" is a DHT (UDP)
// endpoint, a "peer" a BitTorrent (TCP) endpoint. A "seeder host" is one
// loopback IP (127.0.200.N) with a DHT node and one TCP listener per torrent
// it serves; it speaks only the handshake, BEP 10 and BEP 9, which is all a
// metadata fetch needs, so info dicts of any size (with fake piece hashes)
// cost no payload on disk.
//
// Flow of BenchmarkMetaLatency: start a dhttest network (256 nodes), for
// each case (info dict size x seeder count) start the seeder hosts and
// announce, then per round run each client cold from process start until
// its .torrent is written: `magnetget meta` (fresh data dir, and "warm" with
// the routing.db a previous run saved), libtorrent's metadata-only download
// and `aria2c --bt-metadata-only`. Figures are p50/p95 per client and the
// ratio to the fastest other client. BenchmarkMetaBatch resolves many
// magnets with one `magnetget meta --from FILE` and reports metadata per
// minute. Timing is reported, never asserted.
package meta
