package dht

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGetPeersServe measures get_peers queries answered per second by a node whose store
// holds 100k peers across 10k infohashes, and the heap that store takes. Clients are raw UDP
// sockets sending pre-encoded queries, one outstanding query each.
func BenchmarkGetPeersServe(b *testing.B) {
	const infohashes, perIH = 10_000, 10
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.3.1:0"), Rate: -1, MaxPeers: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ihs := make([][20]byte, infohashes)
	for i := range ihs {
		binary.BigEndian.PutUint64(ihs[i][:], rand.Uint64())
		binary.BigEndian.PutUint32(ihs[i][8:], uint32(i))
		for j := range perIH {
			n.peers.add(ihs[i], netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j)}), uint16(1000+j)))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if p, _ := n.peers.counts(); p != infohashes*perIH {
		b.Fatalf("stored %d peers", p)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "heap-bytes")

	var served atomic.Int64
	b.SetParallelism(4)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.3.2:0")))
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		to := net.UDPAddrFromAddrPort(n.Addr())
		buf := make([]byte, 2048)
		var tx uint16
		for pb.Next() {
			tx++
			ih := ihs[rand.IntN(len(ihs))]
			q := fmt.Appendf(nil, "d1:ad2:id20:%s9:info_hash20:%se1:q9:get_peers1:t2:%s1:y1:qe",
				"abcdefghij0123456789", ih[:], binary.BigEndian.AppendUint16(nil, tx))
			if _, err := c.WriteTo(q, to); err != nil {
				b.Error(err)
				return
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, _, err := c.ReadFrom(buf)
			if err != nil {
				continue // a lost reply: not counted
			}
			if bytes.Contains(buf[:m], []byte("6:values")) {
				served.Add(1)
			}
		}
	})
	b.ReportMetric(float64(served.Load())/time.Since(start).Seconds(), "replies/s")
	if served.Load() == 0 {
		b.Fatal("no get_peers reply carried values")
	}
}
