# A libtorrent peer on loopback for metadata interop tests (TCP only, no DHT/LSD/UPnP).
#   ltpeer.py seed DIR        create a 16 MiB file in DIR, seed it; print "<v1 infohash hex> <port>",
#                             then run until stdin closes
#   ltpeer.py fetch DIR IH HOST:PORT
#                             fetch the metadata of IH from that one peer; print "ok <info size>"
import os
import sys
import time

import libtorrent as lt


def session():
    return lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    })


def seed(d):
    path = os.path.join(d, "payload.bin")
    with open(path, "wb") as f:
        block = bytes(range(256)) * 4096  # 1 MiB
        for i in range(16):
            f.write(block[i:] + block[:i])
    fs = lt.file_storage()
    lt.add_files(fs, path)
    # 16 KiB pieces: 1024 hashes, so the info dict spans two ut_metadata pieces.
    t = lt.create_torrent(fs, 16384, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(t, d)
    ti = lt.torrent_info(t.generate())
    ses = session()
    h = ses.add_torrent({"ti": ti, "save_path": d})
    deadline = time.time() + 60
    while not h.status().is_seeding:
        if time.time() > deadline:
            sys.exit("libtorrent did not start seeding")
        time.sleep(0.05)
    print(str(ti.info_hashes().v1), ses.listen_port(), flush=True)
    sys.stdin.read()


def fetch(d, ih, peer):
    host, port = peer.rsplit(":", 1)
    ses = session()
    atp = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + ih)
    atp.save_path = d
    h = ses.add_torrent(atp)
    h.connect_peer((host, int(port)))
    deadline = time.time() + 60
    while not h.status().has_metadata:
        if time.time() > deadline:
            sys.exit("no metadata after 60 s")
        time.sleep(0.05)
    print("ok", h.torrent_file().metadata_size(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "seed":
        seed(sys.argv[2])
    else:
        fetch(sys.argv[2], sys.argv[3], sys.argv[4])
