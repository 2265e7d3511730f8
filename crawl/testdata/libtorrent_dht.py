# Starts n libtorrent DHT nodes on 127.0.(60+k).1 (own /24 each), seeding nih small torrents,
# prints {"nodes": [...], "infohashes": [...]} once they announced, and runs until stdin closes.
# Used by libtorrent_test.go; settings per /work/shared/NOTES-real-clients.md.
import json, os, sys, tempfile, time
import libtorrent as lt

n = int(sys.argv[1]); nih = int(sys.argv[2]); d = sys.argv[3]
sessions = []
for k in range(n):
    sessions.append(lt.session({
        'listen_interfaces': '127.0.%d.1:0' % (60 + k),
        'enable_dht': True, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        'enable_outgoing_utp': False, 'enable_incoming_utp': False,
        'dht_restrict_routing_ips': False, 'dht_restrict_search_ips': False,
        'dht_enforce_node_id': False, 'dht_prefer_verified_node_ids': False,
        'dht_ignore_dark_internet': False, 'dht_block_ratelimit': 100000,
        'dht_bootstrap_nodes': '', 'dht_sample_infohashes_interval': 0,
        'alert_mask': 0,
    }))
ports = [s.listen_port() for s in sessions]
for i, s in enumerate(sessions):
    for j in range(n):
        if j != i:
            s.add_dht_node(('127.0.%d.1' % (60 + j), ports[j]))
handles, ihs = [], []
for i in range(nih):
    name = 'lt-file-%d.bin' % i
    with open(os.path.join(d, name), 'wb') as f:
        f.write(os.urandom(1000 + i))
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(d, name))
    ct = lt.create_torrent(fs, 0, lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, d)
    ti = lt.torrent_info(ct.generate())
    handles.append(sessions[i % n].add_torrent({'ti': ti, 'save_path': d}))
    ihs.append(str(ti.info_hashes().v1))
time.sleep(2)
for h in handles:
    h.force_dht_announce()
time.sleep(2)
print(json.dumps({'nodes': ['127.0.%d.1:%d' % (60 + k, ports[k]) for k in range(n)], 'infohashes': ihs}), flush=True)
sys.stdin.read()
