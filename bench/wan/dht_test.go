package wan

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/netem"
	"github.com/magnetget/magnetget/internal/peersource"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// Start modes of BenchmarkDHTStart, in the order each round runs them; "libtorrent" is a cold
// python3-libtorrent metadata fetch from the same entry node, when it is installed.
var startModes = []string{"cold", "warm", "libtorrent"}

// clientLink is the access-link index every client uses, so that all runs see the same client
// delay; seeder links use seederLink+k. Both are far above any node index.
const (
	clientLink = 10000
	seederLink = 20000
)

type startResult struct {
	firstPeer, meta time.Duration
	err             error
}

// BenchmarkDHTStart measures the time from a client's start to its first peer and to the info
// dict, cold and warm, under the healthy and the mainline profile. Knobs: WAN_NODES (live DHT
// nodes, default 100), WAN_ROUNDS (runs per mode, default 3), WAN_META_SEEDERS (default 2),
// WAN_LIBTORRENT (0: leave libtorrent out), WAN_SEED (another network of the same profile).
func BenchmarkDHTStart(b *testing.B) {
	nodesN := envInt(b, "WAN_NODES", 100)
	rounds := max(1, envInt(b, "WAN_ROUNDS", 3))
	seedersN := max(1, envInt(b, "WAN_META_SEEDERS", 2))
	withLT := envInt(b, "WAN_LIBTORRENT", 1) != 0
	if withLT {
		if err := realclient.LibtorrentAvailable(); err != nil {
			if os.Getenv("CI") == "true" {
				b.Fatalf("libtorrent: %v", err)
			}
			b.Logf("leaving libtorrent out: %v", err)
			withLT = false
		}
	}
	for pi, p := range []dhttest.Profile{dhttest.Healthy, dhttest.Mainline} {
		// One network per run: its dead nodes and delays decide much of a cold start, so compare
		// builds over several WAN_SEEDs, not one.
		p.Seed += uint64(envInt(b, "WAN_SEED", 0))
		b.Run("profile="+p.Name, func(b *testing.B) {
			nodes := dhttest.NetworkProfile(b, nodesN, p)
			info := metadatatest.SingleFileInfo(uint64(pi+1), "wan.bin", 1<<30, 1<<20) // ~20 KiB: 2 BEP 9 pieces
			ih := sha1.Sum(info)
			announceSeeders(b, p, nodes, info, seedersN)
			entry := nodes[0].Addr()
			logLoad(b)

			results := map[string][]startResult{}
			run := 0
			for r := range rounds {
				state := filepath.Join(b.TempDir(), "routing.db")
				for _, mode := range startModes {
					if mode == "libtorrent" {
						if withLT {
							res := runLibtorrent(ipOf(245, run), entry, ih)
							run++
							results[mode] = append(results[mode], res)
							b.Logf("%s round %d %-11s metadata %7.1f ms (python start included) %v", p.Name, r, mode, ms(res.meta), errText(res.err))
						}
						continue
					}
					sf := ""
					switch mode {
					case "cold":
						sf = state // saved at Close, for the warm run
					case "warm":
						sf = filepath.Join(b.TempDir(), "routing.db")
						if err := copyFile(state, sf); err != nil {
							b.Fatalf("warm state: %v", err)
						}
					}
					res := runClient(p, ipOf(240, run), entry, sf, ih)
					run++
					results[mode] = append(results[mode], res)
					b.Logf("%s round %d %-11s first peer %7.1f ms, metadata %7.1f ms %v", p.Name, r, mode, ms(res.firstPeer), ms(res.meta), errText(res.err))
				}
			}
			for _, mode := range startModes {
				if len(results[mode]) == 0 {
					continue
				}
				b.Run("start="+mode, func(b *testing.B) {
					var fp, mt []time.Duration
					fails := 0
					for _, r := range results[mode] {
						if r.err != nil {
							fails++
							continue
						}
						fp, mt = append(fp, r.firstPeer), append(mt, r.meta)
					}
					if mode != "libtorrent" { // lt.py reports no first peer
						b.ReportMetric(ms(median(fp)), "firstpeer-ms")
					}
					b.ReportMetric(ms(median(mt)), "meta-ms")
					b.ReportMetric(float64(fails), "failed")
				})
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "FAILED: " + err.Error()
}

// announceSeeders starts seedersN metadata seeders on the IPs of live nodes (not the entry
// node) and announces each from its node. A seeder's TCP link carries both its own access delay
// and the client's, since the client's TCP dials are not wrapped.
func announceSeeders(b *testing.B, p dhttest.Profile, nodes []*dht.Node, info []byte, seedersN int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ih := sha1.Sum(info)
	var wg sync.WaitGroup
	errs := make([]error, seedersN)
	for k := range seedersN {
		host := nodes[(k+1)*len(nodes)/(seedersN+1)]
		rtt := 2 * (p.Link(seederLink+k).Send.Delay + p.Link(clientLink).Send.Delay)
		s := startMetaSeeder(b, host.Addr().Addr(), info, netem.Symmetric(rtt, 0))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = host.Announce(ctx, ih, int(s.Addr.Port()))
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			b.Fatalf("announce seeder %d: %v", k, err)
		}
	}
}

// runClient starts a client as `magnetget meta` does (default rate and query timeout, one
// bootstrap address, the given routing.db, a read-only dht.Set whose bootstrap walk runs in the
// background) and fetches ih's info dict with metadata.Fetch from a peersource.Source: the
// lookup starts at once, cold or warm. Times count from just before dht.New.
func runClient(p dhttest.Profile, ip netip.Addr, entry netip.AddrPort, stateFile string, ih [20]byte) startResult {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return startResult{err: err}
	}
	var conn net.PacketConn = pc
	if p != dhttest.Healthy {
		conn = p.Wrap(pc, clientLink)
	}
	start := time.Now()
	n, err := dht.New(dht.Config{Conn: conn, StateFile: stateFile, Bootstrap: []netip.AddrPort{entry}, ReadOnly: true})
	if err != nil {
		conn.Close()
		return startResult{err: err}
	}
	set, err := dht.NewSet(n)
	if err != nil {
		n.Close()
		return startResult{err: err}
	}
	defer set.Close()
	set.StartBootstrap(nil)

	fp := &firstPeer{DHT: set, start: start}
	src := peersource.New(peersource.Config{InfoHash: ih, DHT: fp})
	sctx, scancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { src.Run(sctx) })
	fctx, fcancel := context.WithCancel(sctx)
	res, err := metadata.Fetch(fctx, ih, src.Peers(fctx), metadata.Options{})
	meta := time.Since(start)
	fcancel()
	for _, c := range res.Conns {
		c.Close()
	}
	scancel()
	wg.Wait()
	first := fp.get()
	if err != nil {
		return startResult{firstPeer: first, err: fmt.Errorf("fetch: %w", err)}
	}
	return startResult{firstPeer: first, meta: meta}
}

// firstPeer is a peersource.DHT that notes when the first peer came.
type firstPeer struct {
	peersource.DHT
	start time.Time
	mu    sync.Mutex
	first time.Duration
}

func (f *firstPeer) Lookup(ctx context.Context, ih [20]byte, fn func(dht.PeerResult) bool) error {
	return f.DHT.Lookup(ctx, ih, func(r dht.PeerResult) bool {
		f.mu.Lock()
		if f.first == 0 {
			f.first = time.Since(f.start)
		}
		f.mu.Unlock()
		return fn(r)
	})
}

func (f *firstPeer) get() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

// runLibtorrent fetches ih's info dict with a cold python3-libtorrent (a read-only DHT node,
// TCP only) bootstrapped from entry, and returns its own measure: process start to metadata.
// Its UDP socket is not behind the client's access link (it lives in another process), so under
// the mainline profile its DHT round trips are shorter than magnetget's by up to 2 × the client
// link's delay; its TCP to the seeders crosses the same links.
func runLibtorrent(ip netip.Addr, entry netip.AddrPort, ih [20]byte) startResult {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "magnetget-wan-lt-")
	if err != nil {
		return startResult{err: err}
	}
	defer os.RemoveAll(dir)
	r, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{
		Magnet: "magnet:?xt=urn:btih:" + hex.EncodeToString(ih[:]), Dir: dir, MetadataOnly: true,
		Bootstrap: []netip.AddrPort{entry}, IP: ip, MaxLifetime: time.Minute,
	})
	if err != nil {
		return startResult{err: err}
	}
	return startResult{meta: r.Metadata}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
