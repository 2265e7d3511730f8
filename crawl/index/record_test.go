package index

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func sampleEntries() []Entry {
	return []Entry{
		{How: Sampled, FirstSeen: t0, LastSeen: t0, NextRetry: t0},
		{How: Sampled | Announce, FirstSeen: t0, LastSeen: t0.Add(time.Hour), Meta: MetaFailed, Attempts: 3, NextRetry: t0.Add(8 * time.Minute),
			Peers:  []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("[::1]:65535")},
			peerMs: []int64{t0.UnixMilli(), t0.Add(time.Hour).UnixMilli()}},
		{How: GetPeers, FirstSeen: t0, LastSeen: t0, Meta: MetaFetched,
			Metadata: Metadata{Name: "name", Size: 42, Files: []File{{Path: []string{"a", "b"}, Length: 40}, {Path: []string{"c"}, Length: 2}}}},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for i, e := range sampleEntries() {
		e.InfoHash = ihOf("x")
		got, err := decodeRecord(e.InfoHash, encodeRecord(nil, &e))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%d: round trip\n got %+v\nwant %+v", i, got, e)
		}
	}
}

// TestRecordVersion2Peers: a record written before peers had times (schema
// /2) reads with its peers dated by its last sighting.
func TestRecordVersion2Peers(t *testing.T) {
	b := []byte{2, byte(Announce), byte(MetaNone)}
	b = binary.AppendVarint(b, t0.UnixMilli())
	b = binary.AppendVarint(b, t0.Add(time.Hour).UnixMilli())
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendVarint(b, t0.UnixMilli())
	b = binary.AppendUvarint(b, 3)             // sightings
	b = binary.AppendUvarint(b, 1)             // peers
	b = append(b, 4, 127, 0, 0, 1, 0x1a, 0xe1) // 127.0.0.1:6881
	e, err := decodeRecord([20]byte{}, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Peers) != 1 || e.Peers[0].String() != "127.0.0.1:6881" || len(e.peerMs) != 1 || e.peerMs[0] != t0.Add(time.Hour).UnixMilli() {
		t.Errorf("peers %v times %v, want 127.0.0.1:6881 dated by the last sighting", e.Peers, e.peerMs)
	}
}

func TestRecordRejectsDamage(t *testing.T) {
	e := sampleEntries()[2]
	b := encodeRecord(nil, &e)
	for _, bad := range [][]byte{nil, {2}, b[:len(b)-1], append(bytes.Clone(b), 0)} {
		if _, err := decodeRecord([20]byte{}, bad); err == nil {
			t.Errorf("decodeRecord(%x) accepted damaged input", bad)
		}
	}
}

// FuzzDecodeRecord: records come back from a file that may be damaged; the
// decoder must never panic, and what it accepts must re-encode to the same
// bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(encodeRecord(nil, &e))
	}
	f.Add([]byte{1, 0, 2, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2, 4, 0, 2, 2, 0, 2, 3, 1, 4, 127, 0, 0, 1, 0x1a, 0xe1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeRecord([20]byte{}, b)
		if err != nil {
			return
		}
		e2, err := decodeRecord([20]byte{}, encodeRecord(nil, &e))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the record\n%+v\n%+v", e, e2)
		}
	})
}
