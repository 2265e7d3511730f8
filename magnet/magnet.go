// Package magnet parses and formats magnet URIs for BitTorrent v1 (BEP 9) and v2 (BEP 52).
//
// A magnet names a torrent by its infohash: xt=urn:btih:<SHA-1> for v1, xt=urn:btmh:1220<SHA-256>
// (a sha2-256 multihash) for v2, or both for a hybrid torrent, one info dict with two hashes. It may carry
// hints: a display name (dn), trackers (tr), peer addresses (x.pe), web seeds
// (ws), where to download the .torrent itself (xs, an http or https URL), the
// total length (xl) and a file selection (so, BEP 53). Parse is
// lenient where real magnets are sloppy (any case, repeated or indexed
// parameters such as tr.1, unknown parameters) and strict where a mistake
// would silently fetch the wrong thing (a malformed or conflicting infohash,
// a malformed peer address or file selection).
package magnet

import (
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Sentinel errors; the errors Parse returns wrap one of them when it applies.
var (
	ErrNotMagnet  = errors.New("not a magnet URI")
	ErrNoInfoHash = errors.New("no btih or btmh infohash")
	// ErrV2Unsupported is what RequireV1 returns for a v2-only magnet, for callers that can only
	// join a v1 swarm. Parse itself accepts v2-only magnets.
	ErrV2Unsupported = errors.New("BitTorrent v2 (btmh) magnets are not supported")
	ErrBadInfoHash   = errors.New("bad infohash")
)

// Magnet is a parsed magnet URI. Empty lists are nil.
//
// Parse sets HasV1 and HasV2 to say which infohashes the magnet carries. A Magnet built by hand
// with neither set is read as a v1 magnet of InfoHash (String, RequireV1, SwarmHashes).
type Magnet struct {
	InfoHash   [20]byte // btih: SHA-1 of the info dict; zero when only HasV2
	InfoHashV2 [32]byte // btmh: SHA-256 of the info dict; zero unless HasV2
	HasV1      bool
	HasV2      bool
	Name       string   // dn
	Trackers   []string // tr, in order, deduplicated
	Peers      []string // x.pe normalised to "host:port" (multiaddr forms converted); IPv6 as "[::1]:6881"
	WebSeeds   []string // ws, in order, deduplicated
	Sources    []string // xs ("exact source"): http(s) URLs of the .torrent, in order, deduplicated; others dropped
	Select     []Range  // so (BEP 53): file indexes, sorted, overlapping and adjacent ranges merged
	Length     int64    // xl, 0 if absent
}

// maxSources bounds Magnet.Sources: each is an HTTP fetch, and a real magnet
// names one or two.
const maxSources = 8

// Range is an inclusive range of file indexes.
type Range struct{ First, Last int }

// Contains reports whether file index i is in r.
func (r Range) Contains(i int) bool { return i >= r.First && i <= r.Last }

// Selected reports whether file index i is wanted: true when the magnet has
// no selection or the selection contains i.
func (m *Magnet) Selected(i int) bool {
	if len(m.Select) == 0 {
		return true
	}
	for _, r := range m.Select {
		if r.Contains(i) {
			return true
		}
	}
	return false
}

const scheme = "magnet:"

// maxFileIndex bounds so= indexes so that range arithmetic cannot overflow
// and absurd values are reported instead of accepted.
const maxFileIndex = 1<<31 - 2

// Parse parses a magnet URI. Errors start with "magnet: " and name the
// parameter at fault.
func Parse(uri string) (*Magnet, error) {
	s := strings.TrimSpace(uri)
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, fmt.Errorf("magnet: %w: want a URI starting with %q", ErrNotMagnet, scheme+"?")
	}
	s = s[len(scheme):]
	// "magnet://?xt=..." appears in the wild (a URL library adding "//").
	s = strings.TrimPrefix(s, "//")
	query, ok := strings.CutPrefix(s, "?")
	if !ok {
		return nil, fmt.Errorf("magnet: %w: no '?' after %q", ErrNotMagnet, scheme)
	}

	var (
		m        Magnet
		haveBtih bool
		btmh     string // first btmh URN of a hash function we do not know
		seenPeer = map[string]bool{}
		seenTr   = map[string]bool{}
		seenWs   = map[string]bool{}
		seenXs   = map[string]bool{}
		haveXl   bool
	)
	for _, param := range strings.Split(query, "&") {
		if param == "" {
			continue
		}
		rawKey, rawVal, _ := strings.Cut(param, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			continue // not a key we could know
		}
		switch paramName(strings.ToLower(key)) {
		case "xt":
			val, err := unescape("xt", rawVal)
			if err != nil {
				return nil, err
			}
			urn, ok := cutPrefixFold(val, "urn:btih:")
			if ok {
				ih, err := ParseInfoHash(urn)
				if err != nil {
					return nil, fmt.Errorf("magnet: xt: %w", err)
				}
				if haveBtih && ih != m.InfoHash {
					return nil, fmt.Errorf("magnet: xt: conflicting btih infohashes %x and %x", m.InfoHash, ih)
				}
				m.InfoHash, haveBtih = ih, true
				continue
			}
			if urn, ok := cutPrefixFold(val, "urn:btmh:"); ok {
				if !isSHA256Multihash(urn) {
					// A future hash function: not ours to use, but not a
					// reason to refuse a magnet that has a usable hash too.
					if btmh == "" {
						btmh = urn
					}
					continue
				}
				h, err := ParseInfoHashV2(urn)
				if err != nil {
					return nil, fmt.Errorf("magnet: xt: %w", err)
				}
				if m.HasV2 && h != m.InfoHashV2 {
					return nil, fmt.Errorf("magnet: xt: conflicting btmh infohashes %x and %x", m.InfoHashV2, h)
				}
				m.InfoHashV2, m.HasV2 = h, true
				continue
			}
			// Other URNs (sha1, ed2k, tree:tiger, ...) belong to other
			// networks sharing the magnet format: ignore them.
		case "dn":
			val, err := url.QueryUnescape(rawVal)
			if err != nil {
				// A name is only a hint, and raw '%' in names is common
				// in hand-made magnets: keep the text as written.
				val = rawVal
			}
			if m.Name == "" {
				m.Name = val
			}
		case "tr":
			val, err := unescape("tr", rawVal)
			if err != nil {
				return nil, err
			}
			if val != "" && !seenTr[val] {
				seenTr[val] = true
				m.Trackers = append(m.Trackers, val)
			}
		case "ws":
			val, err := unescape("ws", rawVal)
			if err != nil {
				return nil, err
			}
			if val != "" && !seenWs[val] {
				seenWs[val] = true
				m.WebSeeds = append(m.WebSeeds, val)
			}
		case "xs":
			val, err := unescape("xs", rawVal)
			if err != nil {
				return nil, err
			}
			// Only a URL we can fetch the .torrent from: xs also carries urn:btpk
			// (BEP 46) and urn:sha1 names, which say nothing we could use.
			if u, err := url.Parse(val); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
				!seenXs[val] && len(m.Sources) < maxSources {
				seenXs[val] = true
				m.Sources = append(m.Sources, val)
			}
		case "x.pe":
			val, err := unescape("x.pe", rawVal)
			if err != nil {
				return nil, err
			}
			p, err := normalisePeer(val)
			if err != nil {
				return nil, fmt.Errorf("magnet: x.pe: %w", err)
			}
			if !seenPeer[p] {
				seenPeer[p] = true
				m.Peers = append(m.Peers, p)
			}
		case "so":
			val, err := unescape("so", rawVal)
			if err != nil {
				return nil, err
			}
			rs, err := parseSelect(val)
			if err != nil {
				return nil, fmt.Errorf("magnet: so: %w", err)
			}
			m.Select = append(m.Select, rs...)
		case "xl":
			val, err := unescape("xl", rawVal)
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("magnet: xl: want a non-negative byte count, got %q", val)
			}
			if haveXl && n != m.Length {
				return nil, fmt.Errorf("magnet: xl: conflicting lengths %d and %d", m.Length, n)
			}
			m.Length, haveXl = n, true
		}
	}
	m.HasV1 = haveBtih
	if !m.HasV1 && !m.HasV2 {
		if btmh != "" {
			return nil, fmt.Errorf("magnet: xt: %w: urn:btmh:%s is not a sha2-256 multihash (want 1220 and 64 hex characters)", ErrV2Unsupported, abbrev(btmh))
		}
		return nil, fmt.Errorf("magnet: xt: %w: want xt=urn:btih:<40 hex or 32 base32 characters> or xt=urn:btmh:1220<64 hex characters>", ErrNoInfoHash)
	}
	m.Select = mergeRanges(m.Select)
	return &m, nil
}

// paramName maps an indexed parameter such as "tr.1" or "x.pe.2" to its
// base name. Names it does not know come back unchanged and are ignored.
func paramName(key string) string {
	switch key {
	case "xt", "dn", "tr", "ws", "xs", "x.pe", "so", "xl":
		return key
	}
	i := strings.LastIndexByte(key, '.')
	if i < 0 || i == len(key)-1 {
		return key
	}
	for _, c := range key[i+1:] {
		if c < '0' || c > '9' {
			return key
		}
	}
	switch base := key[:i]; base {
	case "xt", "dn", "tr", "ws", "xs", "x.pe", "so", "xl":
		return base
	}
	return key
}

func unescape(name, raw string) (string, error) {
	v, err := url.QueryUnescape(raw)
	if err != nil {
		return "", fmt.Errorf("magnet: %s: bad percent-encoding in %q", name, raw)
	}
	return v, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// abbrev keeps error messages readable when the input is huge.
func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// ParseInfoHash parses an infohash written as 40 hexadecimal or 32 base32
// characters, in any case.
func ParseInfoHash(s string) ([20]byte, error) {
	var ih [20]byte
	switch len(s) {
	case 40:
		if _, err := hex.Decode(ih[:], []byte(s)); err != nil {
			return [20]byte{}, fmt.Errorf("%w: %q is not hexadecimal", ErrBadInfoHash, s)
		}
	case 32:
		n, err := base32.StdEncoding.Decode(ih[:], []byte(strings.ToUpper(s)))
		if err != nil || n != 20 {
			return [20]byte{}, fmt.Errorf("%w: %q is not base32", ErrBadInfoHash, s)
		}
	default:
		return [20]byte{}, fmt.Errorf("%w: want 40 hex or 32 base32 characters, got %d characters (%q)", ErrBadInfoHash, len(s), abbrev(s))
	}
	return ih, nil
}

// sha256Multihash is the multihash prefix of a SHA-256 digest: function 0x12, length 0x20.
const sha256Multihash = "1220"

// isSHA256Multihash reports whether a btmh value claims to be a sha2-256 multihash, well-formed
// or not (so that a mistyped one is reported rather than ignored).
func isSHA256Multihash(s string) bool {
	return len(s) >= len(sha256Multihash) && s[:len(sha256Multihash)] == sha256Multihash
}

// ParseInfoHashV2 parses a v2 infohash written as a sha2-256 multihash in hex ("1220" and 64 hex
// characters, as in urn:btmh:) or as 64 bare hex characters, in any case.
func ParseInfoHashV2(s string) ([32]byte, error) {
	var h [32]byte
	digest := s
	if len(s) == 68 {
		if !isSHA256Multihash(s) {
			return h, fmt.Errorf("%w: %q is not a sha2-256 multihash (want 1220 and 64 hex characters)", ErrBadInfoHash, abbrev(s))
		}
		digest = s[len(sha256Multihash):]
	}
	if len(digest) != 64 {
		return h, fmt.Errorf("%w: want a v2 infohash of 1220 and 64 hex characters, got %d characters (%q)", ErrBadInfoHash, len(s), abbrev(s))
	}
	if _, err := hex.Decode(h[:], []byte(digest)); err != nil {
		return [32]byte{}, fmt.Errorf("%w: %q is not hexadecimal", ErrBadInfoHash, abbrev(s))
	}
	return h, nil
}

// ParseTarget parses what a user may type to name a torrent: a magnet URI, a bare v1 infohash
// (40 hex or 32 base32 characters), "urn:btih:<infohash>", a bare v2 infohash (64 hex
// characters, or 1220 and 64 hex characters) or "urn:btmh:1220<64 hex>".
func ParseTarget(s string) (*Magnet, error) {
	s = strings.TrimSpace(s)
	if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
		return Parse(s)
	}
	if h, isURN := cutPrefixFold(s, "urn:btmh:"); isURN || len(h) == 64 || len(h) == 68 {
		ih, err := ParseInfoHashV2(h)
		if err != nil {
			return nil, fmt.Errorf("magnet: %w", err)
		}
		return &Magnet{InfoHashV2: ih, HasV2: true}, nil
	}
	h, isURN := cutPrefixFold(s, "urn:btih:")
	ih, err := ParseInfoHash(h)
	if err == nil {
		return &Magnet{InfoHash: ih, HasV1: true}, nil
	}
	if isURN || len(h) == 40 || len(h) == 32 {
		return nil, fmt.Errorf("magnet: %w", err)
	}
	return nil, fmt.Errorf("magnet: %w and not an infohash: %q", ErrNotMagnet, abbrev(s))
}

// v1 reports whether m names a v1 (or hybrid) torrent by InfoHash.
func (m *Magnet) v1() bool { return m.HasV1 || !m.HasV2 }

// RequireV1 returns an error wrapping ErrV2Unsupported when m carries only a v2 infohash, for
// callers that can join only a v1 swarm; nil otherwise.
func (m *Magnet) RequireV1() error {
	if m.v1() {
		return nil
	}
	return fmt.Errorf("magnet: %w: this magnet has only a v2 infohash (urn:btmh:%s%x); a hybrid magnet that also has urn:btih works",
		ErrV2Unsupported, sha256Multihash, m.InfoHashV2)
}

// SwarmHashes returns the 20-byte hashes under which the torrent's swarm is found on the DHT, at
// trackers and in peer handshakes: the v1 infohash, then the v2 infohash truncated to 20 bytes
// (BEP 52). A hybrid torrent has both and peers may be announced under either.
func (m *Magnet) SwarmHashes() [][20]byte {
	var out [][20]byte
	if m.v1() {
		out = append(out, m.InfoHash)
	}
	if m.HasV2 {
		out = append(out, [20]byte(m.InfoHashV2[:20]))
	}
	return out
}

// String returns the canonical magnet URI for m: parameters in a fixed order,
// the infohashes as lowercase hex (btih first, then btmh, as libtorrent
// writes hybrid magnets), values percent-encoded. Parse(m.String()) returns a
// Magnet equal to m when m came from Parse.
func (m *Magnet) String() string {
	var b strings.Builder
	b.WriteString("magnet:?")
	sep := ""
	add := func(k, v string) {
		b.WriteString(sep)
		sep = "&"
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(escape(v))
	}
	if m.v1() {
		add("xt", "urn:btih:"+hex.EncodeToString(m.InfoHash[:]))
	}
	if m.HasV2 {
		add("xt", "urn:btmh:"+sha256Multihash+hex.EncodeToString(m.InfoHashV2[:]))
	}
	if m.Name != "" {
		add("dn", m.Name)
	}
	if m.Length > 0 {
		add("xl", strconv.FormatInt(m.Length, 10))
	}
	for _, t := range m.Trackers {
		add("tr", t)
	}
	for _, w := range m.WebSeeds {
		add("ws", w)
	}
	for _, x := range m.Sources {
		add("xs", x)
	}
	for _, p := range m.Peers {
		add("x.pe", p)
	}
	if len(m.Select) > 0 {
		add("so", formatSelect(m.Select))
	}
	return b.String()
}

// escape percent-encodes v for a magnet query value. It leaves the URI
// unreserved characters and ":/,@" as they are, so trackers, peers and
// selections stay readable, and writes a space as %20, which every
// decoder reads as a space (a '+' is not read so by all).
func escape(v string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:/,@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
