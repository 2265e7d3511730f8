// Package pex encodes and decodes BEP 11 peer exchange (ut_pex) messages: a bencoded dict whose
// "added"/"dropped" strings hold compact IPv4 peers (6 bytes each) and "added6"/"dropped6"
// compact IPv6 peers (18 bytes each).
package pex

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/anacrolix/torrent/bencode"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// ErrBadMessage is wrapped by Decode errors.
var ErrBadMessage = errors.New("bad ut_pex message")

// MaxPeers bounds how many peers of each kind one message may carry (BEP 11 suggests 50; some
// clients send more).
const MaxPeers = 200

// MaxMessageLen bounds the encoded message we accept.
const MaxMessageLen = 16 << 10

// Message is one ut_pex message.
type Message struct {
	Added   []netip.AddrPort
	Dropped []netip.AddrPort
}

type wire struct {
	Added    string `bencode:"added"`
	AddedF   string `bencode:"added.f,omitempty"`
	Added6   string `bencode:"added6,omitempty"`
	Added6F  string `bencode:"added6.f,omitempty"`
	Dropped  string `bencode:"dropped"`
	Dropped6 string `bencode:"dropped6,omitempty"`
}

// Decode parses a ut_pex payload. Peers with port 0 or an unspecified address are skipped.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageLen {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	var w wire
	if err := unmarshal(b, &w); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	var m Message
	var err error
	if m.Added, err = compact(w.Added, 4, nil); err != nil {
		return Message{}, err
	}
	if m.Added, err = compact(w.Added6, 16, m.Added); err != nil {
		return Message{}, err
	}
	if m.Dropped, err = compact(w.Dropped, 4, nil); err != nil {
		return Message{}, err
	}
	if m.Dropped, err = compact(w.Dropped6, 16, m.Dropped); err != nil {
		return Message{}, err
	}
	return m, nil
}

// unmarshal decodes b, which must be one bencoded dict and nothing more, into v. It goes
// through peerwire's guarded decoder: no string longer than b itself (the decoder's default
// cap is 128 MiB, which a 20-byte payload announcing a huge string made it allocate), nesting
// capped (a deep one made it allocate for minutes), and a decoder panic turned into an error.
func unmarshal(b []byte, v any) error {
	n, err := peerwire.DecodeBencodeDict(b, v)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("%d trailing bytes", len(b)-n)
	}
	return nil
}

func compact(s string, ipLen int, out []netip.AddrPort) ([]netip.AddrPort, error) {
	k := ipLen + 2
	if len(s)%k != 0 {
		return nil, fmt.Errorf("%w: compact peer list of %d bytes", ErrBadMessage, len(s))
	}
	if len(s)/k > MaxPeers {
		return nil, fmt.Errorf("%w: %d peers in one list", ErrBadMessage, len(s)/k)
	}
	for i := 0; i < len(s); i += k {
		ip, _ := netip.AddrFromSlice([]byte(s[i : i+ipLen]))
		port := uint16(s[i+ipLen])<<8 | uint16(s[i+ipLen+1])
		if port == 0 || ip.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip.Unmap(), port))
	}
	return out, nil
}

// Encode returns the payload for m; at most MaxPeers of each address family and kind are
// included.
func Encode(m Message) []byte {
	var w wire
	var a4, a6, d4, d6 []byte
	a4, a6 = put(m.Added)
	d4, d6 = put(m.Dropped)
	w.Added, w.Added6, w.Dropped, w.Dropped6 = string(a4), string(a6), string(d4), string(d6)
	w.AddedF = string(make([]byte, len(a4)/6))
	w.Added6F = string(make([]byte, len(a6)/18))
	b, err := bencode.Marshal(w)
	if err != nil { // cannot happen: only strings
		return []byte("de")
	}
	return b
}

func put(aps []netip.AddrPort) (v4, v6 []byte) {
	for _, ap := range aps {
		ip := ap.Addr().Unmap()
		p := []byte{byte(ap.Port() >> 8), byte(ap.Port())}
		if ip.Is4() && len(v4)/6 < MaxPeers {
			b := ip.As4()
			v4 = append(append(v4, b[:]...), p...)
		} else if ip.Is6() && len(v6)/18 < MaxPeers {
			b := ip.As16()
			v6 = append(append(v6, b[:]...), p...)
		}
	}
	return v4, v6
}
