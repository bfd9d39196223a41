#!/usr/bin/env python3
"""Instructions a Redis server spends per lease acquire+release pair, counted by callgrind.

Starts `redis-server` under `valgrind --tool=callgrind` on a free port, loads the lease
scripts from a directory of Lua files (default: this checkout's
`orchestrator-backends/src/redis/lua`) the way `RedisLeaseStore` does, either as one
`EVALSHA` script per operation or as a Redis Functions library (`FCALL`), sets up a pool
of 50 ready workers, warms up, then counts the server's instructions over N rounds of 25
pipelined acquires followed by their 25 pipelined releases (`--mode batch`: one call of
the library's `batch` function with the 25 acquires, then one with the 25 releases).
Prints instructions per pair.

Instruction counts do not depend on what else the machine is doing, so two versions of
the scripts can be compared on a busy machine (wall-clock numbers come from
`bannou-host bench pools`, BENCHMARKS.md).

Needs valgrind, redis-server and redis-py (`pip install redis`).

    scripts/lease-script-instructions.py [--mode eval|functions|batch] [--lua DIR] [--rounds N]
"""

import argparse
import glob
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import redis

OPERATIONS = ["configure", "register", "ready", "acquire", "poll", "cancel", "release",
              "renew", "reclaim", "drain", "remove", "status"]
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LUA = os.path.join(HERE, "..", "orchestrator-backends", "src", "redis", "lua")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Store:
    """The scripts, called like leases.rs calls them."""

    def __init__(self, r, lua, mode):
        self.r, self.mode = r, mode
        common = open(os.path.join(lua, "common.lua")).read()
        bodies = {op: open(os.path.join(lua, f"{op}.lua")).read() for op in OPERATIONS}
        # Older checkouts have no `init`: their prelude reads KEYS itself.
        init = "init(KEYS)\n" if "local function init(keys)" in common else ""
        if mode == "eval":
            self.sha = {op: r.script_load(common + init + body) for op, body in bodies.items()}
        else:
            if not init:
                sys.exit("these scripts predate the Functions library; use --mode eval")
            lib = "#!lua name=bench_count\n" + common
            batch = os.path.join(lua, "batch.lua")
            if os.path.exists(batch):
                # as leases.rs builds it: bodies kept in OPS for `batch`
                lib += "local OPS = {}\n"
                for op, body in bodies.items():
                    lib += (f"do\nlocal f = function(KEYS, ARGV)\n{body}\nend\nOPS['{op}'] = f\n"
                            f"redis.register_function('bench_count_{op}', function(KEYS, ARGV) "
                            f"init(KEYS) return f(KEYS, ARGV) end)\nend\n")
                lib += open(batch).read().replace("{lib}", "bench_count")
            else:
                if mode == "batch":
                    sys.exit("these scripts have no batch.lua; use --mode functions")
                for op, body in bodies.items():
                    lib += (f"redis.register_function('bench_count_{op}', function(KEYS, ARGV)\n"
                            f"init(KEYS)\n{body}\nend)\n")
            r.function_load(lib, replace=True)

    def call(self, conn, op, keys, *args):
        if self.mode == "eval":
            return conn.evalsha(self.sha[op], len(keys), *keys, *args)
        return conn.fcall(f"bench_count_{op}", len(keys), *keys, *args)

    def many(self, op, keys, calls):
        """The replies of operation `op` with each argument list of `calls`, pipelined or
        (mode `batch`) as one call of `batch`."""
        if self.mode == "batch":
            args = [a for call in calls for a in (op, *call)]
            flat, replies, i = self.r.fcall("bench_count_batch", len(keys), *keys, *args), [], 0
            while i < len(flat):  # per operation: the reply's length, then its elements
                replies.append(flat[i + 1:i + 1 + flat[i]])
                i += 1 + flat[i]
            return replies
        p = self.r.pipeline(transaction=False)
        for call in calls:
            self.call(p, op, keys, *call)
        return p.execute()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["eval", "functions", "batch"], default="functions")
    ap.add_argument("--lua", default=DEFAULT_LUA, help="directory of the Lua files")
    ap.add_argument("--rounds", type=int, default=80, help="rounds of 25 pairs counted")
    ap.add_argument("--redis-server", default="redis-server")
    args = ap.parse_args()

    port = free_port()
    out = tempfile.mkdtemp(prefix="lease-cg-")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p.out",
         args.redis_server, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        store = Store(r, args.lua, args.mode)
        base = "count:pool:{bench}:"
        now = int(time.time() * 1000)
        store.call(r, "configure", [base, "count:pools"], "bench", "{}", 50, 300000)
        for i in range(50):
            pid = f"bench-{i:032x}"
            store.call(r, "register", [base], pid, f"bannou-pool-bench-{i:08x}", now)
            store.call(r, "ready", [base], pid, now)
        req = '{"h":"holder-1","r":0,"m":{}}'

        def rounds(n):
            nonlocal now
            for _ in range(n):
                lids = [str(uuid.uuid4()) for _ in range(25)]
                leased = store.many("acquire", [base], [(now, lid, 0, 0, 0, req) for lid in lids])
                for a in leased:
                    assert a[0] == b"leased", a
                released = store.many("release", [base], [
                    (now, lid, a[6].split(b" ")[0], 1) for lid, a in zip(lids, leased)])
                for x in released:
                    assert x[0] == b"ok", x
                now += 1

        rounds(20)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True)
        rounds(args.rounds)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True)
        time.sleep(1)
        dump = sorted(glob.glob(f"{out}/cg.*.out.*"), key=os.path.getmtime)[-1]
        total = int(next(l for l in open(dump) if l.startswith("summary:")).split()[1])
        print(f"{args.mode}: {total // (args.rounds * 25)} instructions per acquire+release pair "
              f"({args.rounds * 25} pairs, {args.lua})")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
