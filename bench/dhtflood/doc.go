// Package dhtflood benchmarks one DHT node, configured as `magnetget node` runs it, under a query
// flood (issue 9): by default 50,000 get_peers queries/s from 1,000 loopback sources (one
// 127.x.y.z each) for a few seconds, with -dhtflood.duration=30s for the full run. The node runs in
// a child process (the test binary re-executed) so that its RSS is its own. Reported: the node's
// peak RSS, the replies each source got against its rate, and the node's own lookup first-peer
// latency (p50) idle and during the flood.
//
//	go test ./bench/dhtflood -run XXX -bench NodeFlood -benchtime 1x -dhtflood.duration 30s
//
// Targets: RSS < 64 MiB, no source above its rate, lookup p50 during the flood <= 2x idle.
package dhtflood
