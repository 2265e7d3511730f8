# Driver for python3-libtorrent sessions on a loopback network, run by
# internal/realclient (go:embed) as: python3 -u -c <this> <mode> <json config>.
#
# Protocol: one JSON object per line on stdout ({"ev": ...}); commands as JSON
# lines on stdin ({"op": ..., "id": n}); EOF on stdin (the Go side died or
# closed us) ends the process at once. Times are seconds since the script
# started, measured here so that they exclude Go's process start-up.

import json
import os
import random
import sys
import threading
import time
import warnings

warnings.simplefilter("ignore", DeprecationWarning)

T0 = time.monotonic()

try:
    import libtorrent as lt
except Exception as e:  # reported as an event so Go can say "not installed"
    sys.stdout.write(json.dumps({"ev": "error", "error": "import libtorrent: %s" % e}) + "\n")
    sys.stdout.flush()
    sys.exit(2)

_out = threading.Lock()
_cmds = []
_cmds_lock = threading.Lock()


def now():
    return round(time.monotonic() - T0, 4)


def emit(ev, **kw):
    kw["ev"] = ev
    kw["t"] = now()
    line = json.dumps(kw)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def fail(msg):
    emit("error", error=msg)
    sys.stdout.flush()
    os._exit(3)


def stdin_reader():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            c = json.loads(line)
        except ValueError:
            continue
        with _cmds_lock:
            _cmds.append(c)
    os._exit(0)


def take_cmds():
    with _cmds_lock:
        cs = list(_cmds)
        del _cmds[:]
    return cs


def settings(ip, dht):
    return {
        "listen_interfaces": "%s:0" % ip,
        "outgoing_interfaces": ip,
        "enable_dht": dht,
        # Never libtorrent's public routers. Our nodes are introduced with
        # add_dht_node instead (see join): libtorrent never puts a bootstrap
        # ("router") node into its routing table, so a list of all our nodes
        # as routers leaves the table empty.
        "dht_bootstrap_nodes": "",
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # uTP is 10-30x slower than TCP on loopback.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # A private loopback DHT: every node is 127.x, which libtorrent
        # otherwise treats as a "dark internet" / same-network flood.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "dht_block_ratelimit": 100000,
        "dht_upload_rate_limit": 10000000,
        "allow_multiple_connections_per_ip": True,
        "user_agent": "realclient-libtorrent/" + lt.__version__,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.dht_notification
        | lt.alert.category_t.dht_operation_notification
        | lt.alert.category_t.storage_notification,
        "aio_threads": 2,
        "hashing_threads": 1,
        "alert_queue_size": 10000,
    }


def transport(st, cfg):
    """utp_only: peers over uTP (BEP 29) alone, both ways, as some clients
    behind NATs and uTorrent's defaults make it."""
    if cfg.get("utp_only"):
        st["enable_outgoing_tcp"] = False
        st["enable_incoming_tcp"] = False
        st["enable_outgoing_utp"] = True
        st["enable_incoming_utp"] = True
    return st


def join(ses, addrs, timeout=10):
    """Wait for ses's DHT to run, then query every address in addrs, so the
    ones that answer land in the routing table."""
    deadline = time.monotonic() + timeout
    while not ses.is_dht_running():
        if time.monotonic() > deadline:
            fail("DHT did not start within %ss" % timeout)
        time.sleep(0.01)
    for a in addrs:
        ses.add_dht_node(ep(a))


def dht_nodes(ses):
    # session.status() is deprecated in 2.0; the session counter is not.
    try:
        return ses.status().dht_nodes
    except Exception:
        return -1


def ep(s):
    h, p = s.rsplit(":", 1)
    return h.strip("[]"), int(p)


def mode_dht(cfg):
    n = int(cfg["nodes"])
    ips = cfg["ips"]
    extra = cfg.get("bootstrap") or []
    sessions = []
    for i in range(n):
        sessions.append(lt.session(settings(ips[i], False)))
    ports = []
    deadline = time.monotonic() + 10
    for s in sessions:
        while not s.is_listening() or s.listen_port() == 0:
            if time.monotonic() > deadline:
                fail("sessions did not listen within 10s")
            time.sleep(0.01)
        ports.append(s.listen_port())
    addrs = ["%s:%d" % (ips[i], ports[i]) for i in range(n)]
    # Start every DHT, then introduce the nodes to each other. libtorrent
    # does not add nodes that query it with the bootstrap flag, and a node
    # that bootstraps from peers whose DHT is not running yet (or whose
    # tables are still empty) sits with an almost empty table for tens of
    # seconds. add_dht_node sends a plain query instead: both ends then learn
    # each other at once.
    for s in sessions:
        s.apply_settings({"enable_dht": True})
    for s in sessions:
        join(s, extra)
    rnd = random.Random(int(cfg.get("seed", 1)))
    intro = int(cfg.get("introduce", 12))
    for i, s in enumerate(sessions):
        others = [j for j in range(n) if j != i]
        if len(others) > intro:
            others = rnd.sample(others, intro)
        for j in others:
            s.add_dht_node((ips[j], ports[j]))
    emit("ready", addrs=addrs)
    last = 0
    while True:
        for c in take_cmds():
            try:
                dht_command(c, sessions, ports)
            except Exception as e:  # a bad command must not kill the network
                emit("reply", id=c.get("id"), error="%s: %s" % (type(e).__name__, e))
        for i, s in enumerate(sessions):
            for a in s.pop_alerts():
                # Posted once per node that answered with peers, and never
                # when nobody has any: there is no "lookup done" alert.
                if isinstance(a, lt.dht_get_peers_reply_alert):
                    peers = ["%s:%d" % (p[0], p[1]) for p in a.peers()]
                    emit("peers", node=i, ih=str(a.info_hash), peers=peers)
        if time.monotonic() - last >= 0.5:
            last = time.monotonic()
            emit("nodes", counts=[dht_nodes(s) for s in sessions])
        time.sleep(0.05)


def dht_command(c, sessions, ports):
    op = c.get("op")
    i = int(c.get("node", 0)) % len(sessions)
    if op == "get_peers":
        sessions[i].dht_get_peers(lt.sha1_hash(bytes.fromhex(c["ih"])))
        emit("reply", id=c["id"])
    elif op == "announce":
        # The python binding cannot call session.dht_announce (its flags
        # type is not exposed), so announce through a torrent: a magnet
        # without peers never gets metadata and never writes a file.
        p = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + c["ih"])
        p.save_path = c.get("dir") or "/nonexistent"
        p.flags &= ~lt.torrent_flags.auto_managed
        p.flags &= ~lt.torrent_flags.paused
        h = sessions[i].add_torrent(p)
        h.force_dht_announce()
        emit("reply", id=c["id"], port=ports[i])
    elif op == "add_node":
        h, p = ep(c["addr"])
        for s in sessions:
            s.add_dht_node((h, p))
        emit("reply", id=c["id"])
    else:
        emit("reply", id=c.get("id"), error="unknown op %r" % op)


def add_params_from(cfg):
    if cfg.get("torrent"):
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(cfg["torrent"])
    else:
        p = lt.parse_magnet_uri(cfg["magnet"])
    p.save_path = cfg["dir"]
    return p


def mode_seed(cfg):
    boot = cfg.get("bootstrap") or []
    st = settings(cfg["ip"], bool(boot))
    # Unchoke rounds every second rather than 15 s, so a peer that turns
    # interested late is served at once.
    st["unchoke_interval"] = 1
    ses = lt.session(transport(st, cfg))
    if boot:
        join(ses, boot)
    p = add_params_from(cfg)
    # The data was written by the test: trust it rather than hash 1 GiB first.
    p.flags |= lt.torrent_flags.seed_mode
    p.flags &= ~lt.torrent_flags.auto_managed
    p.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(p)
    ih = str(p.ti.info_hash())
    port = ses.listen_port()
    ready = False
    announced = False
    forced_at = None
    asked_at = 0
    status_at = 0
    # Peers to dial, again every 2 s: the first attempt can come before the
    # peer has loaded the torrent, and libtorrent's own retry is slow.
    dial = []
    dial_at = time.monotonic()
    min_nodes = int(cfg.get("min_nodes", 3))
    while True:
        for c in take_cmds():
            try:
                if c.get("op") == "connect":
                    h.connect_peer(ep(c["addr"]))
                    dial.append(ep(c["addr"]))
                    emit("reply", id=c.get("id"))
                else:
                    emit("reply", id=c.get("id"), error="unknown op %r" % c.get("op"))
            except Exception as e:
                emit("reply", id=c.get("id"), error="%s: %s" % (type(e).__name__, e))
        if dial and time.monotonic() - dial_at > 2:
            dial_at = time.monotonic()
            for a in dial:
                h.connect_peer(a)
        st = h.status()
        if not ready and st.is_seeding:
            port = ses.listen_port()
            ready = True
            emit("ready", addr="%s:%d" % (cfg["ip"], port), ih=ih)
        if ready and boot and not announced:
            nodes = dht_nodes(ses)
            # A cold DHT's first automatic announce fires before the table
            # has nodes and is lost: force one once it has some, again
            # every few seconds until our own lookup sees us.
            if nodes >= min_nodes and (forced_at is None or time.monotonic() - forced_at > 5):
                h.force_dht_announce()
                forced_at = time.monotonic()
            if forced_at is not None and time.monotonic() - asked_at > 1:
                asked_at = time.monotonic()
                ses.dht_get_peers(p.ti.info_hash())
        if time.monotonic() - status_at >= 1:
            status_at = time.monotonic()
            emit("status", nodes=dht_nodes(ses), peers=st.num_peers, uploaded=st.total_upload)
        for a in ses.pop_alerts():
            if isinstance(a, lt.dht_get_peers_reply_alert) and not announced:
                peers = [x[1] for x in a.peers()]
                emit("lookup", peers=["%s:%d" % (x[0], x[1]) for x in a.peers()])
                if port in peers:
                    announced = True
                    emit("announced", nodes=dht_nodes(ses))
            elif isinstance(a, lt.torrent_error_alert):
                fail("torrent error: %s" % a.message())
        time.sleep(0.05)


def write_torrent(ti, path):
    # info_section() is the info dict exactly as received, so the file hashes
    # to the same infohash.
    info = bytes(ti.info_section())
    with open(path, "wb") as f:
        f.write(b"d4:info" + info + b"e")


def mode_download(cfg):
    boot = cfg.get("bootstrap") or []
    st = settings(cfg["ip"], bool(boot))
    # A downloader lives for seconds: as a BEP 43 read-only node it never
    # enters other nodes' tables, where it would linger as a dead entry that
    # costs every later lookup a 15 s timeout.
    st["dht_read_only"] = True
    ses = lt.session(transport(st, cfg))
    if boot:
        join(ses, boot)
    p = add_params_from(cfg)
    p.flags &= ~lt.torrent_flags.auto_managed
    p.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(p)
    for peer in cfg.get("peers") or []:
        h.connect_peer(ep(peer))
    t_meta = now() if h.status().has_metadata else None
    if t_meta is not None:
        emit("metadata", name=h.status().name)
    finished = False
    reconnect_at = time.monotonic() + 2

    def got_metadata():
        nonlocal t_meta
        t_meta = now()
        ti = h.torrent_file()
        emit("metadata", name=ti.name())
        if cfg.get("metadata_only"):
            out = os.path.join(cfg["dir"], str(ti.info_hash()) + ".torrent")
            write_torrent(ti, out)
            emit("done", metadata=t_meta, torrent=out)
            sys.stdout.flush()
            os._exit(0)

    # The torrent's first DHT lookup fires at once, usually before the table
    # holds the nodes join() just queried: look again once it does.
    want_nodes = min(3, len(boot))
    forced = not boot
    while True:
        if not forced and dht_nodes(ses) >= want_nodes:
            forced = True
            h.force_dht_announce()
        if time.monotonic() > reconnect_at and cfg.get("peers"):
            reconnect_at = time.monotonic() + 2
            for peer in cfg["peers"]:
                h.connect_peer(ep(peer))
        for a in ses.pop_alerts():
            if isinstance(a, lt.metadata_received_alert) and t_meta is None:
                got_metadata()
            elif isinstance(a, lt.torrent_finished_alert) and not finished:
                finished = True
                # Finished fires before the last blocks are on disk.
                h.flush_cache()
            elif isinstance(a, lt.cache_flushed_alert) and finished:
                emit("done", metadata=t_meta, bytes=h.status().total_done)
                sys.stdout.flush()
                os._exit(0)
            elif isinstance(a, lt.torrent_error_alert):
                fail("torrent error: %s" % a.message())
            elif isinstance(a, lt.file_error_alert):
                fail("file error: %s" % a.message())
        # The status poll can see the metadata before its alert arrives;
        # whichever comes first finishes a metadata-only run.
        if t_meta is None and h.status().has_metadata:
            got_metadata()
        time.sleep(0.02)


def main():
    mode = sys.argv[1]
    cfg = json.loads(sys.argv[2])
    threading.Thread(target=stdin_reader, daemon=True).start()
    limit = float(cfg.get("lifetime", 600))
    t = threading.Timer(limit, lambda: fail("lifetime of %ss exceeded" % limit))
    t.daemon = True
    t.start()
    {"dht": mode_dht, "seed": mode_seed, "download": mode_download}[mode](cfg)


main()
