package metadata_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// Tests in this package do not run in parallel: each checks that Fetch left no goroutine behind,
// which a concurrent Fetch would confuse.

var (
	singleInfo = metadatatest.SingleFileInfo(1, "single.iso", 700<<20, 256<<10) // ~54 KiB: 4 pieces
	multiInfo  = metadatatest.MultiFileInfo(2, "album", 40, 5<<20, 1<<20)
)

// fastOpts keeps hostile-peer tests short: silent peers are given up on quickly.
// (Generous enough that an honest peer on a loaded CI machine under -race is not cut off.)
var fastOpts = metadata.Options{RequestTimeout: time.Second, HandshakeTimeout: 5 * time.Second}

func fetch(t *testing.T, ih [20]byte, o metadata.Options, addrs ...netip.AddrPort) (metadata.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := metadata.Fetch(ctx, ih, metadatatest.Peers(addrs...), o)
	checkNoLeak(t)
	t.Cleanup(func() {
		for _, c := range res.Conns {
			c.Close()
		}
	})
	return res, err
}

// checkNoLeak fails if a goroutine of Fetch or of peerwire's dial/handshake is still running. A
// goroutine that already called wg.Done may still be on its way out, so look a few times.
func checkNoLeak(t *testing.T) {
	t.Helper()
	var left []string
	for range 100 {
		left = left[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "metadatatest.") {
				continue // the seeders' own goroutines
			}
			if strings.Contains(g, "metadata.(*fetcher)") || strings.Contains(g, "metadata.(*peerConn)") ||
				strings.Contains(g, "peerwire.withDeadline") || strings.Contains(g, "peerwire.Dial") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("goroutines left behind after Fetch returned:\n%s", strings.Join(left, "\n\n"))
}

func checkInfo(t *testing.T, res metadata.Result, err error, want []byte) {
	t.Helper()
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !bytes.Equal(res.Info, want) {
		t.Fatalf("Fetch returned %d bytes that differ from the %d-byte info dict", len(res.Info), len(want))
	}
}

func connAddrs(res metadata.Result) []netip.AddrPort {
	var out []netip.AddrPort
	for _, c := range res.Conns {
		out = append(out, c.RemoteAddr())
	}
	return out
}

func TestFetchSingleFileHandsConnOnWithPendingMessages(t *testing.T) {
	bf := peerwire.Message{ID: peerwire.Bitfield, Bitfield: []byte{0xff, 0xf0}}
	have := peerwire.Message{ID: peerwire.Have, Index: 3}
	s := metadatatest.NewSeeder(t, singleInfo, metadatatest.Behavior{Before: []peerwire.Message{bf, have}})
	res, err := fetch(t, s.InfoHash, metadata.Options{}, s.Addr)
	checkInfo(t, res, err, singleInfo)
	if len(res.Conns) != 1 || res.Conns[0].RemoteAddr() != s.Addr {
		t.Fatalf("conns handed on: %v, want the seeder %v", connAddrs(res), s.Addr)
	}
	c := res.Conns[0]
	if c.InfoHash() != s.InfoHash || c.PeerExt().MetadataSize != len(singleInfo) {
		t.Errorf("conn infohash %x / peer metadata_size %d", c.InfoHash(), c.PeerExt().MetadataSize)
	}
	// The swarm must see what the peer sent before the metadata exchange, in order.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []peerwire.Message{bf, have} {
		got, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("reading handed-on conn: %v", err)
		}
		if got.ID != want.ID || got.Index != want.Index || !bytes.Equal(got.Bitfield, want.Bitfield) {
			t.Fatalf("handed-on conn gave %v, want %v", got, want)
		}
	}
	// And the connection still works both ways: ask for metadata piece 0 again.
	err = c.WriteMsg(peerwire.Message{ID: peerwire.Extended, ExtID: byte(c.PeerExt().M[metadata.ExtName]), Payload: []byte("d8:msg_typei0e5:piecei0ee")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMsg()
	if err != nil || m.ID != peerwire.Extended || int(m.ExtID) != metadata.LocalExtID {
		t.Fatalf("after hand-on: %v, %v; want a ut_metadata reply", m, err)
	}
}

func TestFetchMultiFileFromSeveralSeeders(t *testing.T) {
	ss := metadatatest.Seeders(t, multiInfo, 3)
	res, err := fetch(t, ss[0].InfoHash, metadata.Options{}, metadatatest.Addrs(ss...)...)
	checkInfo(t, res, err, multiInfo)
	if len(res.Conns) == 0 {
		t.Fatal("no connection handed on")
	}
	for _, a := range connAddrs(res) {
		if !slices.Contains(metadatatest.Addrs(ss...), a) {
			t.Errorf("handed-on conn to %v, not a seeder", a)
		}
	}
}

func TestFetchLargeInfoDict(t *testing.T) {
	info := metadatatest.LargeInfo(3, 4<<20)
	if len(info) < 3<<20 {
		t.Fatalf("test info dict is only %d bytes", len(info))
	}
	ss := metadatatest.Seeders(t, info, 4)
	res, err := fetch(t, sha1.Sum(info), metadata.Options{}, metadatatest.Addrs(ss...)...)
	checkInfo(t, res, err, info)
	served := 0
	for _, s := range ss {
		served += s.Served()
	}
	if want := (len(info) + metadata.PieceSize - 1) / metadata.PieceSize; served < want {
		t.Errorf("seeders served %d pieces, the dict has %d", served, want)
	}
}

func TestFetchHostilePeers(t *testing.T) {
	small := metadata.Options{MaxSize: 1 << 20, RequestTimeout: fastOpts.RequestTimeout, HandshakeTimeout: fastOpts.HandshakeTimeout}
	cases := []struct {
		name string
		b    metadatatest.Behavior
		o    metadata.Options
		want error // in the ErrNoPeers chain when the hostile peer is alone
		// neverKept: the peer is detectably bad, so it must never be handed on.
		neverKept bool
	}{
		{name: "wrong bytes", b: metadatatest.Behavior{WrongBytes: true}, o: fastOpts, want: metadata.ErrHashMismatch},
		{name: "lying small size", b: metadatatest.Behavior{MetadataSize: 1000}, o: fastOpts, want: metadata.ErrHashMismatch, neverKept: true},
		{name: "lying larger size", b: metadatatest.Behavior{MetadataSize: len(multiInfo) + 5*metadata.PieceSize}, o: fastOpts, want: metadata.ErrHashMismatch, neverKept: true},
		{name: "huge size", b: metadatatest.Behavior{MetadataSize: 2 << 20}, o: small, want: metadata.ErrTooLarge, neverKept: true},
		{name: "garbage after handshake", b: metadatatest.Behavior{Raw: metadatatest.Garbage}, o: fastOpts, want: peerwire.ErrMessageTooLarge, neverKept: true},
		{name: "4 GiB length prefix", b: metadatatest.Behavior{Raw: metadatatest.Huge4GiBPrefix}, o: fastOpts, want: peerwire.ErrMessageTooLarge, neverKept: true},
		{name: "bad extended message", b: metadatatest.Behavior{Raw: []byte{0, 0, 0, 1, 20}}, o: fastOpts, want: peerwire.ErrBadMessage, neverKept: true},
		{name: "silent", b: metadatatest.Behavior{Silent: true}, o: fastOpts, want: metadata.ErrTimeout},
		{name: "rejects everything", b: metadatatest.Behavior{RejectAll: true}, o: fastOpts, want: metadata.ErrRejected},
		{name: "no ut_metadata", b: metadatatest.Behavior{NoMetadata: true}, o: fastOpts, want: metadata.ErrNoMetadataExt, neverKept: true},
		{name: "no extension protocol", b: metadatatest.Behavior{NoExtension: true}, o: fastOpts, want: metadata.ErrNoMetadataExt, neverKept: true},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/alone", func(t *testing.T) {
			bad := metadatatest.NewSeeder(t, multiInfo, tc.b)
			_, err := fetch(t, bad.InfoHash, tc.o, bad.Addr)
			if !errors.Is(err, metadata.ErrNoPeers) || !errors.Is(err, tc.want) {
				t.Fatalf("Fetch from only a hostile peer: %v; want ErrNoPeers wrapping %v", err, tc.want)
			}
		})
		t.Run(tc.name+"/with honest", func(t *testing.T) {
			bad := metadatatest.NewSeeder(t, multiInfo, tc.b)
			good := metadatatest.NewSeeder(t, multiInfo, metadatatest.Behavior{})
			res, err := fetch(t, good.InfoHash, tc.o, bad.Addr, good.Addr)
			checkInfo(t, res, err, multiInfo)
			if tc.neverKept && slices.Contains(connAddrs(res), bad.Addr) {
				t.Errorf("the hostile peer was handed on")
			}
		})
	}
}

// Several liars that agree with each other must not outvote one honest peer.
func TestFetchLiarsInMajority(t *testing.T) {
	for _, b := range []metadatatest.Behavior{{WrongBytes: true}, {MetadataSize: 3 * metadata.PieceSize}} {
		var addrs []netip.AddrPort
		for range 3 {
			addrs = append(addrs, metadatatest.NewSeeder(t, multiInfo, b).Addr)
		}
		good := metadatatest.NewSeeder(t, multiInfo, metadatatest.Behavior{})
		addrs = append(addrs, good.Addr)
		res, err := fetch(t, good.InfoHash, fastOpts, addrs...)
		checkInfo(t, res, err, multiInfo)
		if !slices.Contains(connAddrs(res), good.Addr) {
			t.Errorf("%+v: the honest peer was not handed on (conns %v)", b, connAddrs(res))
		}
		// A liar that announced another size is known bad. (One that announced the right size
		// but never sent a piece cannot be told from an honest peer, and may be handed on.)
		for _, a := range connAddrs(res) {
			if b.MetadataSize != 0 && a != good.Addr {
				t.Errorf("%+v: liar %v handed on", b, a)
			}
		}
	}
}

// A stalled peer holding the last pieces must not hold the fetch up for its RequestTimeout: an idle
// peer is asked for the same pieces.
func TestFetchHedgesStalledPeer(t *testing.T) {
	silent := metadatatest.NewSeeder(t, multiInfo, metadatatest.Behavior{Silent: true})
	good := metadatatest.NewSeeder(t, multiInfo, metadatatest.Behavior{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peers := make(chan netip.AddrPort)
	go func() {
		defer close(peers)
		peers <- silent.Addr
		// The honest peer only shows up once the silent one holds every piece.
		for silent.Requests() < 1 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		select {
		case peers <- good.Addr:
		case <-ctx.Done():
		}
	}()
	o := metadata.Options{RequestTimeout: time.Hour, HedgeDelay: 50 * time.Millisecond}
	res, err := metadata.Fetch(ctx, good.InfoHash, peers, o)
	checkNoLeak(t)
	checkInfo(t, res, err, multiInfo)
	for _, c := range res.Conns {
		if c.RemoteAddr() == silent.Addr {
			t.Errorf("the stalled peer was handed on")
		}
		c.Close()
	}
}

func TestFetchDeadPeersFailFast(t *testing.T) {
	good := metadatatest.NewSeeder(t, singleInfo, metadatatest.Behavior{})
	var addrs []netip.AddrPort
	for range 40 {
		addrs = append(addrs, metadatatest.DeadAddr(t))
	}
	// Dead peers first, and only 4 dials at once: each must fail at once for the seeder's turn
	// to come well before the context ends.
	addrs = append(addrs, good.Addr)
	res, err := fetch(t, good.InfoHash, metadata.Options{Dials: 4}, addrs...)
	checkInfo(t, res, err, singleInfo)
}

func TestFetchAllDead(t *testing.T) {
	addrs := []netip.AddrPort{metadatatest.DeadAddr(t), metadatatest.DeadAddr(t)}
	_, err := fetch(t, [20]byte{1}, metadata.Options{}, addrs...)
	if !errors.Is(err, metadata.ErrNoPeers) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Fetch from dead peers: %v; want ErrNoPeers wrapping ECONNREFUSED", err)
	}
	if !strings.Contains(err.Error(), addrs[1].String()) {
		t.Errorf("error %q does not name the failed peer", err)
	}
}

func TestFetchNoPeers(t *testing.T) {
	_, err := fetch(t, [20]byte{1}, metadata.Options{})
	if !errors.Is(err, metadata.ErrNoPeers) {
		t.Fatalf("Fetch with no peers: %v", err)
	}
}

func TestFetchWrongInfoHashPeer(t *testing.T) {
	// The peer serves another torrent: its handshake fails.
	s := metadatatest.NewSeeder(t, singleInfo, metadatatest.Behavior{})
	_, err := fetch(t, sha1.Sum(multiInfo), metadata.Options{}, s.Addr)
	if !errors.Is(err, metadata.ErrNoPeers) {
		t.Fatalf("Fetch: %v", err)
	}
}

func TestFetchCancel(t *testing.T) {
	// A silent peer and a peer channel that stays open: only the context can end this.
	s := metadatatest.NewSeeder(t, multiInfo, metadatatest.Behavior{Silent: true})
	peers := make(chan netip.AddrPort, 1)
	peers <- s.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		// Cancel once Fetch is talking to the peer (bounded by ctx).
		for s.Accepted() == 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	res, err := metadata.Fetch(ctx, s.InfoHash, peers, metadata.Options{RequestTimeout: time.Minute})
	checkNoLeak(t)
	if !errors.Is(err, context.Canceled) || res.Info != nil || res.Conns != nil {
		t.Fatalf("Fetch after cancel: %v, %d bytes, %d conns; want context.Canceled", err, len(res.Info), len(res.Conns))
	}
}

func TestFetch4GiBPrefixBoundedMemory(t *testing.T) {
	bad := metadatatest.NewSeeder(t, singleInfo, metadatatest.Behavior{Raw: metadatatest.Huge4GiBPrefix})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := fetch(t, bad.InfoHash, fastOpts, bad.Addr)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, peerwire.ErrMessageTooLarge) {
		t.Fatalf("Fetch: %v", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 32<<20 {
		t.Errorf("Fetch allocated %d MiB facing a 4 GiB length prefix", d>>20)
	}
}
