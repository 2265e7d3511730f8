// Package interop holds only tests: they show that magnetget works with
// real BitTorrent clients (python3-libtorrent, aria2c, transmission-show)
// the way users run it. TestMain builds the magnetget binary once; every
// test drives it as a subprocess on loopback, next to a libtorrent DHT and
// real seeders or downloaders started through internal/realclient.
//
// Each test skips when its client is missing, and fails instead under
// CI=true. Addresses: the libtorrent DHT uses 127.0.K.1 (realclient's
// layout); every magnetget process gets its own 127.77.0.N address.
package interop
