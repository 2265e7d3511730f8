"""Download one .torrent with python3-libtorrent over TCP only, then exit.

usage: lt_get.py FILE.torrent OUTDIR LISTEN_IP [PEER_IP:PORT ...]

uTP is off both ways (it is 10-30x slower on loopback), as are DHT, LSD, UPnP and NAT-PMP, and
so is protocol encryption: by default libtorrent dials with an MSE handshake first, which
magnetget seeders do not speak, and loses about a second per peer falling back. Peers come from
the torrent's tracker and from the arguments. Exits 0 once every piece is verified and
libtorrent's disk cache is flushed (it reports "finished" before the last blocks are on disk).
"""
import sys
import time

import libtorrent as lt


def main():
    tfile, outdir, ip = sys.argv[1:4]
    peers = sys.argv[4:]
    s = lt.session({
        "listen_interfaces": f"{ip}:0",
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "out_enc_policy": int(lt.enc_policy.disabled), "in_enc_policy": int(lt.enc_policy.disabled),
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
    })
    h = s.add_torrent({"ti": lt.torrent_info(tfile), "save_path": outdir})
    for p in peers:
        host, port = p.rsplit(":", 1)
        h.connect_peer((host, int(port)))
    deadline = time.monotonic() + 600
    finished = False
    while time.monotonic() < deadline:
        s.wait_for_alert(500)
        for a in s.pop_alerts():
            if isinstance(a, lt.torrent_error_alert):
                sys.exit(f"libtorrent: {a.message()}")
            if isinstance(a, lt.torrent_finished_alert) and not finished:
                finished = True
                h.flush_cache()
            if isinstance(a, lt.cache_flushed_alert) and finished:
                return
    sys.exit("libtorrent: timed out")


main()
