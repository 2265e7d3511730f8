package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// recordVersion is the first byte of every record written. Version 1
// (schema /1) lacks the sightings count, version 2 (schema /2) the peers'
// announce times; both are still read. A record with
// another first byte is treated as corrupt (skipped and logged), so a future
// record layout must come with a schema bump.
const recordVersion = 3

// Bounds applied when decoding a record read back from disk: the file may
// have been damaged or written by something else, so nothing is trusted.
const (
	maxStoredPeers = 255
	maxFiles       = 1 << 20
	maxComponents  = 256
	maxStringLen   = 1 << 16
)

// ErrBadRecord reports a stored record that cannot be decoded.
var ErrBadRecord = errors.New("bad index record")

// encodeRecord appends the binary form of e (minus its infohash, which is
// the key) to dst.
func encodeRecord(dst []byte, e *Entry) []byte {
	dst = append(dst, recordVersion, byte(e.How), byte(e.Meta))
	dst = binary.AppendVarint(dst, unixMilli(e.FirstSeen))
	dst = binary.AppendVarint(dst, unixMilli(e.LastSeen))
	dst = binary.AppendUvarint(dst, uint64(max(e.Attempts, 0)))
	dst = binary.AppendVarint(dst, unixMilli(e.NextRetry))
	dst = binary.AppendUvarint(dst, uint64(max(e.Seen, 0)))
	l := e.peers()
	peers, times := l.addrs, l.ms
	if len(peers) > maxStoredPeers {
		peers, times = peers[len(peers)-maxStoredPeers:], times[len(times)-maxStoredPeers:]
	}
	dst = binary.AppendUvarint(dst, uint64(len(peers)))
	for i, p := range peers {
		a := p.Addr().Unmap()
		if a.Is4() {
			b := a.As4()
			dst = append(dst, 4)
			dst = append(dst, b[:]...)
		} else {
			b := a.As16()
			dst = append(dst, 16)
			dst = append(dst, b[:]...)
		}
		dst = binary.BigEndian.AppendUint16(dst, p.Port())
		dst = binary.AppendVarint(dst, times[i])
	}
	if e.Meta != MetaFetched {
		return dst
	}
	dst = appendString(dst, e.Name)
	dst = binary.AppendVarint(dst, e.Size)
	dst = binary.AppendUvarint(dst, uint64(len(e.Files)))
	for _, f := range e.Files {
		dst = binary.AppendUvarint(dst, uint64(len(f.Path)))
		for _, c := range f.Path {
			dst = appendString(dst, c)
		}
		dst = binary.AppendVarint(dst, f.Length)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	if len(s) > maxStringLen {
		s = s[:maxStringLen]
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads a record and remembers the first error, so the decoding
// code reads straight through and checks once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadRecord, what)
	}
	d.b = nil
}

func (d *decoder) byte_(what string) byte {
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int, what string) []byte {
	if n < 0 || len(d.b) < n {
		d.fail(what)
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an unsigned count and checks it against limit and against
// the bytes left (each counted item takes at least minSize bytes), so a
// damaged count never causes a large allocation.
func (d *decoder) count(limit, minSize int, what string) int {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	if v > uint64(limit) || v*uint64(minSize) > uint64(len(d.b)) {
		d.fail(what + " out of range")
		return 0
	}
	return int(v)
}

func (d *decoder) string_(what string) string {
	n := d.count(maxStringLen, 1, what+" length")
	return string(d.bytes(n, what))
}

// decodeRecord decodes a stored record for infohash ih. It never panics and
// never allocates more than a small multiple of len(b).
func decodeRecord(ih [20]byte, b []byte) (Entry, error) {
	d := decoder{b: b}
	e := Entry{InfoHash: ih}
	v := d.byte_("version")
	if d.err == nil && (v < 1 || v > recordVersion) {
		return Entry{}, fmt.Errorf("%w: record version %d", ErrBadRecord, v)
	}
	e.How = How(d.byte_("how"))
	e.Meta = MetaStatus(d.byte_("metadata status"))
	e.FirstSeen = fromMilli(d.varint("first seen"))
	e.LastSeen = fromMilli(d.varint("last seen"))
	e.Attempts = d.count(1<<31-1, 0, "attempts")
	e.NextRetry = fromMilli(d.varint("next retry"))
	if v >= 2 {
		e.Seen = int64(d.count(1<<62, 0, "sightings"))
	}
	if np := d.count(maxStoredPeers, 7, "peer count"); np > 0 {
		e.Peers = make([]netip.AddrPort, 0, np)
		e.peerMs = make([]int64, 0, np)
		for range np {
			var a netip.Addr
			switch fam := d.byte_("peer family"); fam {
			case 4:
				if b := d.bytes(4, "ipv4"); b != nil {
					a = netip.AddrFrom4([4]byte(b))
				}
			case 16:
				if b := d.bytes(16, "ipv6"); b != nil {
					a = netip.AddrFrom16([16]byte(b)).Unmap()
				}
			default:
				d.fail("peer family")
			}
			port := d.bytes(2, "port")
			ms := unixMilli(e.LastSeen) // before version 3: dated by the last sighting
			if v >= 3 {
				ms = d.varint("peer time")
			}
			if d.err != nil {
				break
			}
			e.Peers = append(e.Peers, netip.AddrPortFrom(a, binary.BigEndian.Uint16(port)))
			e.peerMs = append(e.peerMs, ms)
		}
	}
	switch e.Meta {
	case MetaNone, MetaFailed:
	case MetaFetched:
		e.Name = d.string_("name")
		e.Size = d.varint("size")
		nf := d.count(maxFiles, 2, "file count")
		if nf > 0 {
			e.Files = make([]File, 0, nf)
		}
		for range nf {
			nc := d.count(maxComponents, 1, "path length")
			f := File{Path: make([]string, 0, nc)}
			for range nc {
				f.Path = append(f.Path, d.string_("path component"))
			}
			f.Length = d.varint("file length")
			if d.err != nil {
				break
			}
			e.Files = append(e.Files, f)
		}
	default:
		d.fail("metadata status")
	}
	if d.err != nil {
		return Entry{}, d.err
	}
	if len(d.b) != 0 {
		return Entry{}, fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(d.b))
	}
	return e, nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
