package dht

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// encodeSampleReply builds a sample_infohashes reply the way handleQuery does.
func encodeSampleReply(t string, id [20]byte, samples [][20]byte, num int, interval time.Duration, nodes []nodeEntry, v6 bool) ([]byte, error) {
	var s []byte
	for _, ih := range samples {
		s = append(s, ih[:]...)
	}
	str, iv, n := string(s), int64(interval/time.Second), int64(num)
	body := replyBody{ID: string(id[:]), Samples: &str, Interval: &iv, Num: &n}
	if v6 {
		body.Nodes6 = compactNodes(nodes, true)
	} else {
		body.Nodes = compactNodes(nodes, false)
	}
	return bencode.Marshal(reply{R: body, T: t, Y: "r"})
}

// The hand-encoded reply decodes with the library's own message type, as a querying node sees it.
func TestSampleReplyRoundTrip(t *testing.T) {
	id := [20]byte{0xaa}
	samples := [][20]byte{{1}, {2}, {3}}
	nodes := []nodeEntry{{[20]byte{5}, netip.MustParseAddrPort("127.0.0.5:1005")}, {[20]byte{6}, netip.MustParseAddrPort("[::1]:1006")}}
	for _, v6 := range []bool{false, true} {
		b, err := encodeSampleReply("tx", id, samples, 42, time.Minute, nodes, v6)
		if err != nil {
			t.Fatal(err)
		}
		var m krpc.Msg
		if err := bencode.Unmarshal(b, &m); err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
		if m.T != "tx" || m.Y != "r" || m.R == nil || m.R.ID != id {
			t.Fatalf("header: %+v", m)
		}
		s := sampleFromReturn(m.R)
		if !slices.Equal(s.Infohashes, samples) || s.Num != 42 || s.Interval != time.Minute {
			t.Fatalf("sample = %+v", s)
		}
		want := nodes[0].addr
		if v6 {
			want = nodes[1].addr
		}
		if !slices.Equal(s.Nodes, []netip.AddrPort{want}) {
			t.Fatalf("v6=%v nodes = %v, want [%v]", v6, s.Nodes, want)
		}
	}
	// No samples: the key is still present (BEP 51 says so, to tell supporters apart).
	b, _ := encodeSampleReply("t", id, nil, 0, time.Minute, nil, false)
	if !bytes.Contains(b, []byte("7:samples0:")) {
		t.Fatalf("empty reply lacks samples: %q", b)
	}
}

// FuzzSampleReply feeds arbitrary packets through the decoding a SampleInfohashes caller does.
func FuzzSampleReply(f *testing.F) {
	b, _ := encodeSampleReply("tx", [20]byte{1}, [][20]byte{{2}, {3}}, 7, time.Hour, []nodeEntry{{[20]byte{4}, netip.MustParseAddrPort("127.1.2.3:5")}}, false)
	f.Add(b)
	f.Add([]byte("d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa8:intervali-5e3:numi99999999999999999999e7:samples3:abce1:t1:x1:y1:re"))
	f.Add([]byte("d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa7:samples40:bbbbbbbbbbbbbbbbbbbbcccccccccccccccccccce1:t1:x1:y1:re"))
	f.Add([]byte("d1:eli204e14:Method Unknowne1:t1:x1:y1:ee"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m krpc.Msg
		if err := bencode.Unmarshal(b, &m); err != nil {
			return
		}
		s := sampleFromReturn(m.R)
		if len(s.Infohashes)*20 > len(b) || s.Num < 0 || s.Interval < 0 || s.Interval > 6*time.Hour {
			t.Fatalf("unbounded sample from %d bytes: %d infohashes, num %d, interval %v", len(b), len(s.Infohashes), s.Num, s.Interval)
		}
	})
}
