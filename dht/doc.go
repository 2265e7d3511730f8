// Package dht runs one BitTorrent Mainline DHT node (BEP 5) on one UDP socket, built on
// github.com/anacrolix/dht/v2 with the traps of that library worked around.
//
// Vocabulary: a "node" is a DHT participant reached over UDP (an id and an address); a "peer" is a
// BitTorrent client reached over TCP, stored in the DHT under an infohash.
//
// Flow: New opens (or adopts) the socket, loads the routing state file (node id and the nodes that
// answered last time) and seeds the routing table with those nodes. Bootstrap walks toward our own
// id, starting from the saved nodes and falling back to the bootstrap list when nothing answers.
// Lookup walks toward an infohash with get_peers and streams the peers it meets; Announce does the
// same walk and then sends announce_peer, with the tokens collected, to the closest nodes. Walks
// are our own (traverse.go): they start from whatever is known without waiting for Bootstrap, and
// a query unanswered after a short soft timeout stops holding one of the alpha slots, so dead
// nodes cost concurrency rather than rounds.
//
// Every packet passes a filter on the socket before the library sees it (inbound.go): anything
// over 4 KiB, malformed, nested too deep or declaring a string longer than the packet is dropped
// without decoding. Queries never reach the library: this package answers ping, find_node,
// get_peers, announce_peer and BEP 51 sample_infohashes itself, within a reply budget per source
// and one for the node, both apart from the budget our own queries use, so a flood cannot starve
// our lookups. Only answers to our own queries add or verify nodes; a query cannot change the id
// we hold for an address. Nodes are chosen by XOR distance among the nodes that answered us (the
// library's choice walks its buckets in one direction only and is unsorted, which leaves lookups
// short in small networks); peers come from our own store (keyed by ip:port, expiring, capped
// per infohash, per IP and in total) in replies kept small for sources whose address is not
// proven; announce tokens are our own HMACs of the querier's IP and the infohash.
//
// Each Node has its own send limiter (the library's default is one limiter shared by the whole
// process), tracks when each remote node last answered (the library keeps no usable timestamps),
// and owns every goroutine it starts: Close stops them, waits for them, then saves the state file.
package dht
