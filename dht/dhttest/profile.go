package dhttest

import (
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/internal/netem"
)

// Profile describes the conditions of a test DHT: how many of the nodes handed out are dead, the
// round-trip times between nodes and the datagram loss. The zero value is Healthy.
type Profile struct {
	Name string
	// Dead is the share of nodes that never answer among those the live ones know and hand out.
	// NetworkProfile starts n/(1-Dead) nodes, knits them while all are alive, then silences the
	// extra ones: their sockets stay bound and drop everything, as nodes that left the Internet
	// do (no port-unreachable error to fail fast on).
	Dead float64
	// MinRTT and MaxRTT bound the round-trip time between two nodes: each node (and each client
	// wrapped with Wrap) has an access link with a one-way delay drawn uniformly from
	// [MinRTT/4, MaxRTT/4], so a round trip, which crosses two access links twice, falls in
	// [MinRTT, MaxRTT].
	MinRTT, MaxRTT time.Duration
	// Loss is the share of datagrams lost on each one-way trip (drawn at the sender).
	Loss float64
	// Seed picks the dead nodes, the delays and the losses; 0 is a fixed seed like any other.
	Seed uint64
}

var (
	// Healthy is loopback as it is: every node answers at once.
	Healthy = Profile{Name: "healthy"}
	// Mainline is the public DHT as a cold client meets it: half the nodes handed out are gone,
	// round trips of 20–200 ms, 1 % of datagrams lost.
	Mainline = Profile{Name: "mainline", Dead: 0.5, MinRTT: 20 * time.Millisecond, MaxRTT: 200 * time.Millisecond, Loss: 0.01}
)

// Link is the access link of endpoint i under p. Links of the same i are the same, so a client
// restarted with the same i sees the same network.
func (p Profile) Link(i int) netem.Link {
	rng := rand.New(rand.NewPCG(p.Seed, uint64(i)+1<<32))
	lo, hi := p.MinRTT/4, p.MaxRTT/4
	d := lo
	if hi > lo {
		d += time.Duration(rng.Int64N(int64(hi - lo + 1)))
	}
	return netem.Link{
		Send: netem.Dir{Delay: d, Loss: p.Loss},
		Recv: netem.Dir{Delay: d},
		Seed: p.Seed ^ uint64(i)*0x9e3779b97f4a7c15,
	}
}

// Wrap puts a client's socket behind access link i of p (use an i of at least the network's
// size, so it differs from every node's). The returned conn owns pc.
func (p Profile) Wrap(pc net.PacketConn, i int) *netem.PacketConn {
	return netem.NewPacketConn(pc, p.Link(i))
}

// NetworkProfile is Network under p: it returns n live nodes; the dead ones it also started are
// left out of the result (their sockets drop everything) and closed by t.Cleanup with the rest.
// The network is knitted on plain loopback, then every node's link switches to p.
func NetworkProfile(t testing.TB, n int, p Profile) []*dht.Node {
	t.Helper()
	total := n
	if p.Dead > 0 && p.Dead < 1 {
		total = int(math.Round(float64(n) / (1 - p.Dead)))
	}
	conns := make([]*netem.PacketConn, total)
	nodes := NetworkWith(t, total, func(i int, c *dht.Config) {
		conns[i] = netem.NewPacketConn(c.Conn, netem.Link{})
		c.Conn = conns[i]
	})
	rng := rand.New(rand.NewPCG(p.Seed, 7))
	dead := make([]bool, total)
	for _, i := range rng.Perm(total)[:total-n] {
		dead[i] = true
	}
	live := make([]*dht.Node, 0, n)
	for i, c := range conns {
		c.SetLink(p.Link(i))
		if dead[i] {
			c.SetDown(true)
			continue
		}
		live = append(live, nodes[i])
	}
	return live
}
