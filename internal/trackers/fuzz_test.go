package trackers

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
)

// allocBound is what decoding one reply may allocate: a small multiple of its size plus a
// constant for the decoder's own structures.
func allocBound(n int) uint64 { return uint64(4*n + 64<<10) }

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

func httpSeeds() []string {
	return []string{
		"d8:intervali1800e5:peersli5eee",
		"d5:peersli5ed2:ip9:127.0.0.94:porti6881eee",
		"d5:peersld2:ipi5e4:porti1eeee",
		"d5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x1a\xe16:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e",
		"d14:failure reason3:bad15:warning message2:hi8:intervali-1e12:min intervali99999999999999eee",
		"d8:completei5e10:incompletei7e8:intervali60e5:peers0:e",
		"d5:peers1099511627776:xe",
		"d5:peers" + strings.Repeat("l", 300) + strings.Repeat("e", 301),
		"d5:peersl" + strings.Repeat("de", 5000) + "ee",
		"d5:peersl" + strings.Repeat("i0e", 5000) + "ee",
	}
}

func FuzzHTTPReply(f *testing.F) {
	for _, s := range httpSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > MaxReply {
			return
		}
		before := totalAlloc()
		res, err := parseHTTPReply(b)
		if used := totalAlloc() - before; used > allocBound(len(b)) {
			t.Fatalf("%d bytes allocated for a %d-byte reply", used, len(b))
		}
		if len(res.Peers) > MaxPeers || res.Interval < 0 || res.Interval > MaxInterval || res.MinInterval < 0 || res.MinInterval > MaxInterval {
			t.Fatalf("out of bounds: %d peers, interval %v, min %v", len(res.Peers), res.Interval, res.MinInterval)
		}
		if err != nil && len(err.Error()) > 400 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
		if len(res.Warning) > 4*maxQuote+8 {
			t.Fatalf("warning of %d bytes", len(res.Warning))
		}
		for _, p := range res.Peers {
			if !usable(p) {
				t.Fatalf("unusable peer %v", p)
			}
		}
	})
}

// FuzzUDPReply feeds datagrams to the UDP reply path: the exchange's matching of transaction and
// action, then the connect and announce decoders.
func FuzzUDPReply(f *testing.F) {
	req := binary.BigEndian.AppendUint32(make([]byte, 12), 77)
	f.Add(connectReply(req), false)
	f.Add(announceReply(req, 1800, "127.0.0.1:1", "10.0.0.1:65535"), false)
	f.Add(announceReply(req, 0xffffffff, "[::1]:1"), true)
	f.Add(append(udpHeader(actionError, 77), "no\x00"...), false)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 77, 1}, true)
	f.Fuzz(func(t *testing.T, p []byte, v6 bool) {
		if len(p) > udpBufSize {
			return
		}
		before := totalAlloc()
		if len(p) >= 8 && binary.BigEndian.Uint32(p[4:]) == 77 {
			if binary.BigEndian.Uint32(p) == actionError {
				_ = quote(bytes.TrimRight(p[8:], "\x00"))
			}
			_, _ = parseConnectReply(p)
			res, err := parseUDPAnnounce(p, v6)
			if err == nil {
				entry := 6
				if v6 {
					entry = 18
				}
				if len(res.Peers) > (len(p)-20)/entry || res.Interval > MaxInterval || res.Seeders < 0 || res.Leechers < 0 {
					t.Fatalf("out of bounds: %+v", res)
				}
			}
		}
		if used := totalAlloc() - before; used > allocBound(len(p)) {
			t.Fatalf("%d bytes allocated for a %d-byte datagram", used, len(p))
		}
	})
}

// The worst shapes within MaxReply stay within the bound too (the fuzzer rarely builds them).
func TestHTTPReplyAllocWorstCases(t *testing.T) {
	for name, body := range map[string]string{
		"empty dicts":    "d5:peersl" + strings.Repeat("de", MaxReply/2-8) + "ee",
		"integers":       "d5:peersl" + strings.Repeat("i0e", MaxReply/3-8) + "ee",
		"empty strings":  "d5:peersl" + strings.Repeat("0:", MaxReply/2-8) + "ee",
		"compact":        "d5:peers" + "1047996:" + strings.Repeat("\x7f\x00\x00\x01\x1a\xe1", 1047996/6) + "e",
		"deep":           "d5:peers" + strings.Repeat("l", 200) + strings.Repeat("e", 201),
		"long key lists": "d" + strings.Repeat("1:xli1ee", MaxReply/8-8) + "e",
	} {
		b := []byte(body)
		before := totalAlloc()
		res, _ := parseHTTPReply(b)
		used := totalAlloc() - before
		t.Logf("%s: %d bytes -> %d peers, %d bytes allocated (%.1fx)", name, len(body), len(res.Peers), used, float64(used)/float64(len(body)))
		if used > allocBound(len(body)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte reply", name, used, len(body))
		}
	}
}
