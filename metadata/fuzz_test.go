package metadata

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func FuzzParseUTMsg(f *testing.F) {
	f.Add(appendUTMsg(nil, utMsg{Type: msgRequest, Piece: 0}))
	f.Add(appendUTMsg(nil, utMsg{Type: msgReject, Piece: 3}))
	f.Add(appendUTMsg(nil, utMsg{Type: msgData, Piece: 1, TotalSize: 20000, Data: bytes.Repeat([]byte("z"), 20000-PieceSize)}))
	// Real-client shapes: extra keys, keys out of order, a negative piece, leading zeros.
	f.Add([]byte("d5:piecei0e8:msg_typei1e10:total_sizei5e3:xyzi1eeHELLO"))
	f.Add([]byte("d8:msg_typei0e5:piecei-1ee"))
	f.Add([]byte("d8:msg_typei00e5:piecei0ee"))
	f.Add([]byte("d8:msg_typei0e5:piece"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseUTMsg(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
			return
		}
		if m.Type != msgData && m.Data != nil {
			t.Fatalf("msg_type %d with data", m.Type)
		}
		m2, err := parseUTMsg(appendUTMsg(nil, m))
		if err != nil {
			t.Fatalf("re-encoded %+v does not parse: %v", m, err)
		}
		if len(m.Data) == 0 {
			m.Data, m2.Data = nil, nil
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("parse(append(m)) = %+v, want %+v", m2, m)
		}
	})
}
