package utp

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// A SYN and an ack with a selective ack, as libtorrent 2.0 sends them (captured on loopback).
var realPackets = []struct {
	name string
	hex  string
	want header
	plen int
}{
	{"syn", "4100a1b3" + "2c6f0e4d" + "00000000" + "00100000" + "0001" + "0000" + "0004" + "0000000000", header{typ: stSyn, connID: 0xa1b3, timestamp: 0x2c6f0e4d, wnd: 0x100000, seq: 1}, 0},
	{"state+sack", "2101a1b4" + "00000010" + "00000020" + "00010000" + "1234" + "0007" + "0004" + "05000000", header{typ: stState, connID: 0xa1b4, timestamp: 0x10, tsDiff: 0x20, wnd: 0x10000, seq: 0x1234, ack: 7, sack: []byte{5, 0, 0, 0}}, 0},
}

func TestParseTable(t *testing.T) {
	for _, tc := range realPackets {
		b, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		h, payload, err := parse(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.typ != tc.want.typ || h.connID != tc.want.connID || h.seq != tc.want.seq || h.ack != tc.want.ack ||
			h.wnd != tc.want.wnd || h.timestamp != tc.want.timestamp || h.tsDiff != tc.want.tsDiff || !bytes.Equal(h.sack, tc.want.sack) {
			t.Errorf("%s: parsed %+v, want %+v", tc.name, h, tc.want)
		}
		_ = payload
	}
}

func TestParseRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"krpc":            []byte("d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"),
		"short":           {0x01, 0, 0, 0},
		"version 2":       append([]byte{0x02}, make([]byte, 19)...),
		"type 5":          append([]byte{0x51}, make([]byte, 19)...),
		"ext truncated":   append([]byte{0x01, 0x01}, make([]byte, 18)...),
		"ext overrunning": append(append([]byte{0x01, 0x01}, make([]byte, 18)...), 0, 200, 1, 2),
		"empty sack":      append(append([]byte{0x01, 0x01}, make([]byte, 18)...), 0, 0),
	} {
		if _, _, err := parse(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range realPackets {
		b, _ := hex.DecodeString(tc.hex)
		f.Add(b)
	}
	h := header{typ: stData, connID: 9, seq: 3, ack: 2, sack: []byte{1, 2, 3, 4}}
	f.Add(appendPacket(nil, &h, []byte("payload")))
	f.Add([]byte("d1:y1:qe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h header
		var payload []byte
		var err error
		// parse aliases its input and fails with static errors: no allocation at all.
		if allocs := testing.AllocsPerRun(3, func() { h, payload, err = parse(b) }); allocs > 0 {
			t.Fatalf("parse allocated %.0f times for %d input bytes", allocs, len(b))
		}
		if err != nil {
			return
		}
		if len(payload) > len(b) || len(h.sack) > 255 {
			t.Fatalf("payload %d / sack %d beyond input %d", len(payload), len(h.sack), len(b))
		}
		// Re-encoding (unknown extensions dropped) parses to the same header and payload.
		again := appendPacket(nil, &h, payload)
		h2, p2, err := parse(again)
		if err != nil || h2.typ != h.typ || h2.seq != h.seq || h2.ack != h.ack || h2.connID != h.connID ||
			!bytes.Equal(h2.sack, h.sack) || !bytes.Equal(p2, payload) {
			t.Fatalf("round trip: %+v %q -> %+v %q (%v)", h, payload, h2, p2, err)
		}
	})
}
