"""Ask the machine's libmemcached, through pylibmc, what an application
using it would do. Read by pagecache's ketama tests.

Reads one JSON object on stdin and writes one on stdout:
  {"op": "set", "servers": [...], "behaviors": {...}, "keys": [...]}
    sets each key to b"value of " + key through pylibmc;
    answers {"libmemcached": version}.
  {"op": "place", "behavior": "ketama" | "ketama_weighted",
   "servers": ["host:port" | "unix:/path", ...], "keys": [...]}
    answers {"servers": [...]}: the index in servers libmemcached picks
    for each key (memcached_generate_hash, no server contacted).
  {"op": "hash", "strings": [...]}
    answers {"one_at_a_time": [...], "md5": [...]}: libhashkit's own
    hashes of each string's UTF-8 bytes.
"""
import ctypes
import ctypes.util
import json
import sys

import pylibmc

req = json.load(sys.stdin)
if req["op"] == "set":
    mc = pylibmc.Client(req["servers"], behaviors=req["behaviors"])
    for key in req["keys"]:
        if not mc.set(key, b"value of " + key.encode()):
            sys.exit("pylibmc: set %r failed" % key)
    json.dump({"libmemcached": pylibmc.libmemcached_version}, sys.stdout)
elif req["op"] == "place":
    mc = ctypes.CDLL(ctypes.util.find_library("memcached") or "libmemcached.so.11")
    mc.memcached_create.restype = ctypes.c_void_p
    mc.memcached_create.argtypes = [ctypes.c_void_p]
    mc.memcached_server_add.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint16]
    mc.memcached_server_add_unix_socket.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    mc.memcached_behavior_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
    mc.memcached_generate_hash.restype = ctypes.c_uint32
    mc.memcached_generate_hash.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    mc.memcached_free.argtypes = [ctypes.c_void_p]
    # enum memcached_behavior_t (libmemcached-1.0/types/behavior.h)
    behavior = {"ketama": 3, "ketama_weighted": 16}[req["behavior"]]
    m = mc.memcached_create(None)
    for s in req["servers"]:
        if s.startswith("unix:"):
            rc = mc.memcached_server_add_unix_socket(m, s[5:].encode())
        else:
            host, port = s.rsplit(":", 1)
            rc = mc.memcached_server_add(m, host.strip("[]").encode(), int(port))
        if rc != 0:
            sys.exit("memcached_server_add %s: %d" % (s, rc))
    if mc.memcached_behavior_set(m, behavior, 1) != 0:
        sys.exit("memcached_behavior_set failed")
    out = [mc.memcached_generate_hash(m, k.encode(), len(k.encode())) for k in req["keys"]]
    mc.memcached_free(m)
    json.dump({"servers": out}, sys.stdout)
elif req["op"] == "hash":
    hk = ctypes.CDLL(ctypes.util.find_library("hashkit") or "libhashkit.so.2")
    out = {}
    for name in ("one_at_a_time", "md5"):
        f = getattr(hk, "libhashkit_" + name)
        f.restype = ctypes.c_uint32
        f.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        out[name] = [f(s.encode(), len(s.encode())) for s in req["strings"]]
    json.dump(out, sys.stdout)
else:
    sys.exit("unknown op %r" % req["op"])
