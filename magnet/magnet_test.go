package magnet

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func ih2(s string) [32]byte {
	var h [32]byte
	if n, err := hex.Decode(h[:], []byte(s)); err != nil || n != 32 {
		panic(s)
	}
	return h
}

func ih(s string) [20]byte {
	var h [20]byte
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		panic(err)
	}
	return h
}

// realWorld are magnets as published by their sources (shortened where noted).
var realWorld = []struct {
	name string
	uri  string
	want Magnet
}{
	{
		name: "webtorrent Big Buck Bunny",
		uri:  "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&dn=Big+Buck+Bunny&tr=udp%3A%2F%2Fexplodie.org%3A6969&tr=udp%3A%2F%2Ftracker.coppersurfer.tk%3A6969&tr=udp%3A%2F%2Ftracker.empire-js.us%3A1337&tr=udp%3A%2F%2Ftracker.leechers-paradise.org%3A6969&tr=udp%3A%2F%2Ftracker.opentrackr.org%3A1337&tr=wss%3A%2F%2Ftracker.btorrent.xyz&tr=wss%3A%2F%2Ftracker.fastcast.nz&tr=wss%3A%2F%2Ftracker.openwebtorrent.com&ws=https%3A%2F%2Fwebtorrent.io%2Ftorrents%2F&xs=https%3A%2F%2Fwebtorrent.io%2Ftorrents%2Fbig-buck-bunny.torrent",
		want: Magnet{
			InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"),
			HasV1:    true,
			Name:     "Big Buck Bunny",
			Trackers: []string{
				"udp://explodie.org:6969", "udp://tracker.coppersurfer.tk:6969", "udp://tracker.empire-js.us:1337",
				"udp://tracker.leechers-paradise.org:6969", "udp://tracker.opentrackr.org:1337",
				"wss://tracker.btorrent.xyz", "wss://tracker.fastcast.nz", "wss://tracker.openwebtorrent.com",
			},
			WebSeeds: []string{"https://webtorrent.io/torrents/"},
			Sources:  []string{"https://webtorrent.io/torrents/big-buck-bunny.torrent"},
		},
	},
	{
		name: "webtorrent Sintel, upper-case hex",
		uri:  "magnet:?xt=urn:btih:08ADA5A7A6183AAE1E09D831DF6748D566095A10&dn=Sintel&tr=udp%3A%2F%2Fexplodie.org%3A6969&tr=wss%3A%2F%2Ftracker.openwebtorrent.com&ws=https%3A%2F%2Fwebtorrent.io%2Ftorrents%2F",
		want: Magnet{
			InfoHash: ih("08ada5a7a6183aae1e09d831df6748d566095a10"),
			HasV1:    true,
			Name:     "Sintel",
			Trackers: []string{"udp://explodie.org:6969", "wss://tracker.openwebtorrent.com"},
			WebSeeds: []string{"https://webtorrent.io/torrents/"},
		},
	},
	{
		name: "BEP 52 hybrid test torrent: both hashes",
		uri:  "magnet:?xt=urn:btih:631a31dd0a46257d5078c0dee4e66e26f73e42ac&xt=urn:btmh:1220d8dd32ac93357c368556af3ac1d95c9d76bd0dff6fa9833ecdac3d53134efabb&dn=bittorrent-v1-v2-hybrid-test",
		want: Magnet{InfoHash: ih("631a31dd0a46257d5078c0dee4e66e26f73e42ac"), HasV1: true, Name: "bittorrent-v1-v2-hybrid-test",
			InfoHashV2: ih2("d8dd32ac93357c368556af3ac1d95c9d76bd0dff6fa9833ecdac3d53134efabb"), HasV2: true},
	},
	{
		name: "hybrid with btmh first",
		uri:  "magnet:?xt=urn:btmh:1220D8DD32AC93357C368556AF3AC1D95C9D76BD0DFF6FA9833ECDAC3D53134EFABB&xt=urn:btih:631a31dd0a46257d5078c0dee4e66e26f73e42ac",
		want: Magnet{InfoHash: ih("631a31dd0a46257d5078c0dee4e66e26f73e42ac"), HasV1: true,
			InfoHashV2: ih2("d8dd32ac93357c368556af3ac1d95c9d76bd0dff6fa9833ecdac3d53134efabb"), HasV2: true},
	},
	{
		name: "BEP 52 v2-only test torrent",
		uri:  "magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e&dn=bittorrent-v2-test",
		want: Magnet{InfoHashV2: ih2("caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e"), HasV2: true, Name: "bittorrent-v2-test"},
	},
	{
		name: "v2-only, a btmh of an unknown hash function beside it is ignored",
		uri:  "magnet:?xt=urn:btmh:1b20" + strings.Repeat("ab", 32) + "&xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e&xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e",
		want: Magnet{InfoHashV2: ih2("caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e"), HasV2: true},
	},
	{
		name: "base32 (BEP 9 allows it), lower case",
		uri:  "magnet:?xt=urn:btih:3cvjn3f3suvpgcxwl6pnzqijhzvbfbwm&dn=base32",
		want: Magnet{InfoHash: ih("d8aa96ecbb952af30af65f9edcc1093e6a1286cc"), HasV1: true, Name: "base32"},
	},
	{
		name: "mixed Gnutella/ed2k/BitTorrent magnet, xl and indexed xt",
		uri:  "magnet:?xt.1=urn:ed2k:354B15E68FB8F36D7CD88FF94116CDC1&xt.2=urn:tree:tiger:7N5OAMRNGMSSEUE3ORHOKWN4WWIQ5X4EBOOTLJY&xt.3=urn:btih:QHQXPYWMACKDWKP47RRVIV7VOURXFE5Q&xl=10826029&dn=mediawiki-1.15.1.tar.gz&tr=udp%3A%2F%2Ftracker.openbittorrent.com%3A80%2Fannounce",
		want: Magnet{
			InfoHash: ih("81e177e2cc00943b29fcfc635457f575237293b0"),
			HasV1:    true,
			Name:     "mediawiki-1.15.1.tar.gz",
			Trackers: []string{"udp://tracker.openbittorrent.com:80/announce"},
			Length:   10826029,
		},
	},
	{
		name: "indexed tr, duplicate trackers, empty params",
		uri:  "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&&tr.1=http%3A%2F%2Fa.example%2Fannounce&tr.2=http%3A%2F%2Fb.example%2Fannounce&tr=http%3A%2F%2Fa.example%2Fannounce&tr=",
		want: Magnet{
			InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"),
			HasV1:    true,
			Trackers: []string{"http://a.example/announce", "http://b.example/announce"},
		},
	},
	{
		name: "BEP 53 selection, merged and sorted",
		uri:  "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&so=0,2,4,6-8&so.1=5,20-21",
		want: Magnet{
			InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"),
			HasV1:    true,
			Select:   []Range{{0, 0}, {2, 2}, {4, 8}, {20, 21}},
		},
	},
	{
		name: "x.pe in every form, normalised and deduplicated",
		uri: "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c" +
			"&x.pe=127.0.0.1:6881&x.pe=%5B::1%5D:6881&x.pe=[::ffff:10.0.0.1]:80&x.pe=Peer.Example.COM:51413" +
			"&x.pe=%2Fip4%2F127.0.0.1%2Ftcp%2F6881&x.pe=/ip6/2001:db8::1/tcp/5&x.pe=/dns4/seed.example/tcp/7" +
			"&x.pe=/ip4/10.1.2.3/udp/9/utp&x.pe.1=[2001:DB8:0:0::2]:6881",
		want: Magnet{
			InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"),
			HasV1:    true,
			Peers: []string{
				"127.0.0.1:6881", "[::1]:6881", "10.0.0.1:80", "peer.example.com:51413",
				"[2001:db8::1]:5", "seed.example:7", "10.1.2.3:9", "[2001:db8::2]:6881",
			},
		},
	},
	{
		name: "unknown params ignored, percent-encoded name with UTF-8, case-insensitive scheme and keys",
		uri:  "MAGNET:?XT=URN:BTIH:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&DN=%E6%97%A5%E6%9C%AC%20%26%20more&kt=a+b&mt=http%3A%2F%2Fx&x.foo=1&as=http%3A%2F%2Fy",
		want: Magnet{InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"), HasV1: true, Name: "日本 & more"},
	},
	{
		name: "raw percent sign in a name is kept",
		uri:  "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&dn=100%+legit",
		want: Magnet{InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"), HasV1: true, Name: "100%+legit"},
	},
	{
		name: "repeated identical btih, surrounding spaces, magnet://",
		uri:  "  magnet://?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&xt=urn:btih:3WBFL3G4PSSV7MF37AJSHWDQMLNR63I4\n",
		want: Magnet{InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"), HasV1: true},
	},
}

func TestParseRealWorld(t *testing.T) {
	for _, tc := range realWorld {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.uri)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*m, tc.want) {
				t.Fatalf("Parse:\n got %+v\nwant %+v", *m, tc.want)
			}
			// The canonical form parses back to the same magnet and is a
			// fixed point.
			s := m.String()
			m2, err := Parse(s)
			if err != nil {
				t.Fatalf("Parse(String()=%q): %v", s, err)
			}
			if !reflect.DeepEqual(m, m2) {
				t.Fatalf("round trip of %q:\n got %+v\nwant %+v", s, *m2, *m)
			}
			if s2 := m2.String(); s2 != s {
				t.Fatalf("String not stable: %q then %q", s, s2)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const h = "dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"
	tests := []struct {
		uri      string
		sentinel error // nil: no sentinel applies
		msg      string
	}{
		{"", ErrNotMagnet, "magnet: not a magnet URI"},
		{"http://example.com/?xt=urn:btih:" + h, ErrNotMagnet, "not a magnet URI"},
		{"magnet:xt=urn:btih:" + h, ErrNotMagnet, "no '?'"},
		{"magnet:?dn=nothing", ErrNoInfoHash, "magnet: xt: no btih or btmh infohash"},
		{"magnet:?xt=urn:sha1:YNCKHTQCWBTRNJIV4WNAE52SJUQCZO5C", ErrNoInfoHash, "xt: no btih"},
		{"magnet:?xt=urn:btmh:1220abcd", ErrBadInfoHash, "magnet: xt: bad infohash: want a v2 infohash of 1220 and 64 hex characters, got 8"},
		{"magnet:?xt=urn:btmh:1220" + strings.Repeat("x", 64), ErrBadInfoHash, "not hexadecimal"},
		{"magnet:?xt=urn:btmh:1b20" + strings.Repeat("ab", 32), ErrV2Unsupported, "not a sha2-256 multihash"},
		{"magnet:?xt=urn:btmh:1220" + strings.Repeat("ab", 32) + "&xt=urn:btmh:1220" + strings.Repeat("cd", 32), nil, "conflicting btmh infohashes"},
		{"magnet:?xt=urn:btih:" + h[:39], ErrBadInfoHash, "magnet: xt: bad infohash: want 40 hex or 32 base32 characters, got 39"},
		{"magnet:?xt=urn:btih:" + h[:39] + "g", ErrBadInfoHash, "not hexadecimal"},
		{"magnet:?xt=urn:btih:3cvjn3f3suvpgcxwl6pnzqijhzvbfbw1", ErrBadInfoHash, "not base32"},
		{"magnet:?xt=urn:btih:" + h + "&xt=urn:btih:08ada5a7a6183aae1e09d831df6748d566095a10", nil, "magnet: xt: conflicting btih infohashes"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=1.2.3.4", nil, `magnet: x.pe: bad peer address "1.2.3.4"`},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=1.2.3.4:0", nil, "port 0"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=1.2.3.4:65536", nil, "not a number from 1 to 65535"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=::1:6881", nil, "bad peer address"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=1.2.3.400:1", nil, "not a valid IPv4 address"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=bad%20host:1", nil, "neither an IP address nor a DNS name"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=/ip4/1.2.3.4/udp/5", nil, "bad peer multiaddr"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=/ip4/1.2.3.4", nil, "bad peer multiaddr"},
		{"magnet:?xt=urn:btih:" + h + "&x.pe=/unix/tmp/x", nil, "bad peer multiaddr"},
		{"magnet:?xt=urn:btih:" + h + "&so=1,,2", nil, "magnet: so: empty item"},
		{"magnet:?xt=urn:btih:" + h + "&so=", nil, "magnet: so: empty selection"},
		{"magnet:?xt=urn:btih:" + h + "&so=5-3", nil, "range ends before it starts"},
		{"magnet:?xt=urn:btih:" + h + "&so=-3", nil, "missing file index"},
		{"magnet:?xt=urn:btih:" + h + "&so=+3", nil, "not a decimal number"},
		{"magnet:?xt=urn:btih:" + h + "&so=1-2-3", nil, "not a decimal number"},
		{"magnet:?xt=urn:btih:" + h + "&so=99999999999", nil, "too large"},
		{"magnet:?xt=urn:btih:" + h + "&xl=-1", nil, "magnet: xl: want a non-negative byte count"},
		{"magnet:?xt=urn:btih:" + h + "&xl=1&xl=2", nil, "conflicting lengths"},
		{"magnet:?xt=urn:btih:" + h + "&tr=http%3A%2F%2Fa%ZZ", nil, "magnet: tr: bad percent-encoding"},
	}
	for _, tc := range tests {
		m, err := Parse(tc.uri)
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", tc.uri, m)
			continue
		}
		if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
			t.Errorf("Parse(%q) = %v, want it to wrap %v", tc.uri, err, tc.sentinel)
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Parse(%q) = %q, want it to contain %q", tc.uri, err, tc.msg)
		}
		if !strings.HasPrefix(err.Error(), "magnet: ") {
			t.Errorf("Parse(%q) = %q, want the prefix \"magnet: \"", tc.uri, err)
		}
	}
}

func TestString(t *testing.T) {
	m := &Magnet{
		InfoHash: ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"),
		Name:     "a b&c+d/é",
		Trackers: []string{"udp://t.example:1337/announce?k=1&x=2"},
		WebSeeds: []string{"https://w.example/f/"},
		Sources:  []string{"http://w.example/a.torrent?k=1"},
		Peers:    []string{"[::1]:6881", "127.0.0.1:1"},
		Select:   []Range{{0, 0}, {3, 5}},
		Length:   42,
	}
	const want = "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c" +
		"&dn=a%20b%26c%2Bd/%C3%A9&xl=42" +
		"&tr=udp://t.example:1337/announce%3Fk%3D1%26x%3D2" +
		"&ws=https://w.example/f/" +
		"&xs=http://w.example/a.torrent%3Fk%3D1" +
		"&x.pe=%5B::1%5D:6881&x.pe=127.0.0.1:1&so=0,3-5"
	if got := m.String(); got != want {
		t.Fatalf("String:\n got %s\nwant %s", got, want)
	}
	back, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	m.HasV1 = true // what Parse says of a magnet with a btih
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("Parse(String()):\n got %+v\nwant %+v", *back, *m)
	}
	// v2-only and hybrid magnets: btih first, as libtorrent's make_magnet_uri writes them.
	v2 := &Magnet{InfoHashV2: ih2(strings.Repeat("ab", 32)), HasV2: true, Name: "x"}
	if got, want := v2.String(), "magnet:?xt=urn:btmh:1220"+strings.Repeat("ab", 32)+"&dn=x"; got != want {
		t.Errorf("v2-only String = %s, want %s", got, want)
	}
	v2.InfoHash, v2.HasV1 = ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c"), true
	if got, want := v2.String(), "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&xt=urn:btmh:1220"+strings.Repeat("ab", 32)+"&dn=x"; got != want {
		t.Errorf("hybrid String = %s, want %s", got, want)
	}
}

// A v2-only magnet parses; callers that can only join v1 swarms get ErrV2Unsupported from
// RequireV1, and SwarmHashes gives the truncated v2 hash the DHT and handshakes use.
func TestV2OnlyHelpers(t *testing.T) {
	m, err := Parse("magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RequireV1(); !errors.Is(err, ErrV2Unsupported) || !strings.HasPrefix(err.Error(), "magnet: ") {
		t.Errorf("RequireV1 = %v, want ErrV2Unsupported", err)
	}
	if got := m.SwarmHashes(); len(got) != 1 || got[0] != [20]byte(m.InfoHashV2[:20]) {
		t.Errorf("SwarmHashes = %x", got)
	}
	h, err := Parse(realWorld[2].uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RequireV1(); err != nil {
		t.Errorf("hybrid RequireV1 = %v", err)
	}
	if got := h.SwarmHashes(); len(got) != 2 || got[0] != h.InfoHash || got[1] != [20]byte(h.InfoHashV2[:20]) {
		t.Errorf("hybrid SwarmHashes = %x", got)
	}
	// A Magnet built by hand with only InfoHash is a v1 magnet.
	hand := &Magnet{InfoHash: h.InfoHash}
	if hand.RequireV1() != nil || len(hand.SwarmHashes()) != 1 || !strings.HasPrefix(hand.String(), "magnet:?xt=urn:btih:") {
		t.Errorf("hand-built v1 magnet: %v %x %s", hand.RequireV1(), hand.SwarmHashes(), hand.String())
	}
}

func TestParseInfoHash(t *testing.T) {
	want := ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c")
	for _, s := range []string{
		"dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c",
		"DD8255ECDC7CA55FB0BBF81323D87062DB1F6D1C",
		"3WBFL3G4PSSV7MF37AJSHWDQMLNR63I4",
		"3wbfl3g4pssv7mf37ajshwdqmlnr63i4",
	} {
		got, err := ParseInfoHash(s)
		if err != nil || got != want {
			t.Errorf("ParseInfoHash(%q) = %x, %v; want %x", s, got, err, want)
		}
	}
	for _, s := range []string{"", "dd82", "dd8255ecdc7ca55fb0bbf81323d87062db1f6d1", "3WBFL3G4PSSV7MF37AJSHWDQMLNR63I=", "3WBFL3G4PSSV7MF37AJSHWDQMLNR63I1", " dd8255ecdc7ca55fb0bbf81323d87062db1f6d1"} {
		if _, err := ParseInfoHash(s); !errors.Is(err, ErrBadInfoHash) {
			t.Errorf("ParseInfoHash(%q) error = %v, want ErrBadInfoHash", s, err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	want := ih("dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c")
	for _, s := range []string{
		"dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c",
		" 3WBFL3G4PSSV7MF37AJSHWDQMLNR63I4\n",
		"urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c",
		"magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&dn=x",
	} {
		m, err := ParseTarget(s)
		if err != nil || m.InfoHash != want || !m.HasV1 || m.HasV2 {
			t.Errorf("ParseTarget(%q) = %v, %v", s, m, err)
		}
	}
	want2 := ih2("caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e")
	for _, s := range []string{
		"caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e",
		"1220CAF1E1C30E81CB361B9EE167C4AA64228A7FA4FA9F6105232B28AD099F3A302E",
		"urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e",
		"magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e",
	} {
		m, err := ParseTarget(s)
		if err != nil || m.InfoHashV2 != want2 || m.HasV1 || !m.HasV2 {
			t.Errorf("ParseTarget(%q) = %v, %v", s, m, err)
		}
	}
	for _, tc := range []struct {
		s        string
		sentinel error
	}{
		{"file.torrent", ErrNotMagnet},
		{"", ErrNotMagnet},
		{"dd8255ecdc7ca55fb0bbf81323d87062db1f6d1x", ErrBadInfoHash},
		{"urn:btih:dd82", ErrBadInfoHash},
		{"urn:btmh:1220caf1", ErrBadInfoHash},
		{strings.Repeat("z", 64), ErrBadInfoHash},
	} {
		if _, err := ParseTarget(tc.s); !errors.Is(err, tc.sentinel) {
			t.Errorf("ParseTarget(%q) error = %v, want %v", tc.s, err, tc.sentinel)
		}
	}
}

func TestSelected(t *testing.T) {
	all := &Magnet{}
	if !all.Selected(0) || !all.Selected(1000) {
		t.Fatal("an empty selection must select every file")
	}
	m, err := Parse("magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&so=0,2,4-6")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for i := range 10 {
		if m.Selected(i) {
			got = append(got, i)
		}
	}
	if want := []int{0, 2, 4, 5, 6}; !reflect.DeepEqual(got, want) {
		t.Fatalf("selected %v, want %v", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range realWorld {
		f.Add(tc.uri)
	}
	for _, s := range []string{
		"magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&so=0,2,4-6&xl=5",
		"magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&x.pe=[fe80::1%25eth0]:5",
		"magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e",
		"magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&dn=%ZZ%&tr=%20",
		"magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e&xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c",
		"magnet:?xt=urn:btmh:1b20caf1&xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := Parse(uri)
		runtime.ReadMemStats(&after)
		// Bounded work per input byte: no length in a magnet makes Parse allocate beyond it.
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(64*len(uri)+64<<10); got > limit {
			t.Fatalf("Parse of %d bytes allocated %d bytes (limit %d)", len(uri), got, limit)
		}
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned both a magnet and an error")
			}
			if !strings.HasPrefix(err.Error(), "magnet: ") {
				t.Fatalf("error without prefix: %q", err)
			}
			return
		}
		s := m.String()
		m2, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but Parse(String()=%q): %v", uri, s, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %q via %q:\n got %+v\nwant %+v", uri, s, *m2, *m)
		}
		if s2 := m2.String(); s2 != s {
			t.Fatalf("String not stable: %q then %q", s, s2)
		}
	})
}

func FuzzParseInfoHash(f *testing.F) {
	for _, s := range []string{
		"dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c",
		"3WBFL3G4PSSV7MF37AJSHWDQMLNR63I4",
		"3wbfl3g4pssv7mf37ajshwdqmlnr63i=",
		"",
		"zz8255ecdc7ca55fb0bbf81323d87062db1f6d1c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseInfoHash(s)
		if err != nil {
			if !errors.Is(err, ErrBadInfoHash) {
				t.Fatalf("error %v does not wrap ErrBadInfoHash", err)
			}
			return
		}
		// Whatever form was accepted, the hex form names the same hash.
		h2, err := ParseInfoHash(hex.EncodeToString(h[:]))
		if err != nil || h2 != h {
			t.Fatalf("hex round trip of %q: %x, %v", s, h2, err)
		}
		if !strings.EqualFold(s, hex.EncodeToString(h[:])) && len(s) != 32 {
			t.Fatalf("accepted %q, which is neither hex of the hash nor base32", s)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	uri := realWorld[0].uri
	b.SetBytes(int64(len(uri)))
	for b.Loop() {
		if _, err := Parse(uri); err != nil {
			b.Fatal(err)
		}
	}
}

// xs: only http(s) URLs are kept (an xs may name a BEP 46 key or a file hash, which we cannot
// fetch), in order, once each, indexed forms too, and at most maxSources of them.
func TestParseExactSources(t *testing.T) {
	q := "magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c" +
		"&xs=urn:btpk:" + strings.Repeat("ab", 32) + "&xs=ftp://f.example/a.torrent&xs=http:/nohost" +
		"&xs.1=https%3A%2F%2Fa.example%2Fa.torrent&xs=https://a.example/a.torrent&xs.2=http://b.example/b.torrent"
	for i := range 20 {
		q += fmt.Sprintf("&xs=http://c.example/%d.torrent", i)
	}
	m, err := Parse(q)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://a.example/a.torrent", "http://b.example/b.torrent"}
	for i := range maxSources - 2 {
		want = append(want, fmt.Sprintf("http://c.example/%d.torrent", i))
	}
	if !reflect.DeepEqual(m.Sources, want) {
		t.Fatalf("Sources = %q, want %q", m.Sources, want)
	}
}
