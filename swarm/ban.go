package swarm

import (
	"net/netip"
	"time"
)

// Bans. A peer whose data fails verification earns strikes (two when it alone sent the piece,
// one when it shared it); banStrikes strikes make a ban. Both are kept per sender, where a
// sender is an IPv4 address or an IPv6 /64 (one subscriber's prefix: anyone with an IPv6
// address can use every address in its /64, so banning one address would be no ban). Both
// decay: strikes are forgotten strikeTTL after the last one, and a ban ends after banFor,
// doubled for each earlier ban of the same sender up to maxBanFor, so a NAT gateway shared
// with one bad client is not shut out for good. At most maxBanEntries senders are tracked.

const (
	strikeTTL     = 30 * time.Minute
	banFor        = time.Hour
	maxBanFor     = 16 * time.Hour
	maxBanEntries = 4096
)

// senderKey is what strikes and bans are kept under: an IPv4 address, or an IPv6 /64.
func senderKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

type banEntry struct {
	strikes int
	lastHit time.Time // last strike
	until   time.Time // banned until then; zero = not banned
	nbans   int       // bans so far, for the doubling
}

// banList holds strikes and bans. It is not safe for concurrent use (the swarm's lock guards
// it); now is passed in so the decay is tested without waiting.
type banList struct {
	m map[netip.Prefix]*banEntry
}

func newBanList() banList { return banList{m: make(map[netip.Prefix]*banEntry)} }

// banned reports whether ip's sender is banned at now.
func (b *banList) banned(ip netip.Addr, now time.Time) bool {
	e := b.m[senderKey(ip)]
	return e != nil && now.Before(e.until)
}

// strike adds n strikes to ip's sender and reports its strike count and whether this made a
// new ban.
func (b *banList) strike(ip netip.Addr, n int, now time.Time) (strikes int, banned bool) {
	k := senderKey(ip)
	e := b.m[k]
	if e == nil {
		b.makeRoom(now)
		e = &banEntry{}
		b.m[k] = e
	}
	if now.Sub(e.lastHit) > strikeTTL {
		e.strikes = 0
	}
	e.strikes += n
	e.lastHit = now
	if e.strikes >= banStrikes && !now.Before(e.until) {
		e.until = now.Add(min(banFor<<min(e.nbans, 8), maxBanFor))
		e.nbans++
		e.strikes = 0
		return banStrikes, true
	}
	return e.strikes, false
}

// makeRoom keeps the table under maxBanEntries: entries with nothing in force go first; then,
// at random, an eighth of the table's strikes (so the cost is spread over many inserts); bans
// in force only when nothing else is left.
func (b *banList) makeRoom(now time.Time) {
	if len(b.m) < maxBanEntries {
		return
	}
	for k, e := range b.m {
		if !now.Before(e.until) && now.Sub(e.lastHit) > strikeTTL {
			delete(b.m, k)
		}
	}
	for _, bansToo := range []bool{false, true} {
		for k, e := range b.m {
			if len(b.m) < maxBanEntries*7/8 {
				return
			}
			if bansToo || !now.Before(e.until) {
				delete(b.m, k)
			}
		}
	}
}

// list returns the senders banned at now (the address, or the /64's first address).
func (b *banList) list(now time.Time) []netip.Addr {
	var out []netip.Addr
	for k, e := range b.m {
		if now.Before(e.until) {
			out = append(out, k.Addr())
		}
	}
	return out
}
