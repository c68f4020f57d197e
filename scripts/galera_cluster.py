#!/usr/bin/env python3
"""Private three-node MariaDB Galera cluster on one machine, for tests and demos.

Every node gets its own directory under WORKDIR (data dir, socket, pid file,
error log) and its own free ports on 127.0.0.1: client port, Galera
replication port, IST port and SST (rsync) port. Nothing is assumed free:
3306, 4567, 4568 and 4444 are never used, so the cluster runs next to any
other MariaDB. mariadbd runs with --no-defaults and everything on its command
line, so no my.cnf is read. Node 0 is initialised with mariadb-install-db
(root@localhost/127.0.0.1/::1 with an empty password), bootstrapped with
--wsrep-new-cluster, and the other nodes join it with an rsync SST.
Root with an empty password connects over TCP:

    mysql://root@127.0.0.1:<port>/<database>

When the Galera provider (galera-4), rsync, ss/lsof (iproute2), mariadbd or
the mariadb client are missing, they are installed with apt-get (running
apt-get update first when the install fails).

Command line:

    scripts/galera_cluster.py up DIR        start a cluster in DIR (detached),
                                            write DIR/cluster.json, print URLs
    scripts/galera_cluster.py status DIR    state and cluster size of each node
    scripts/galera_cluster.py kill DIR I    SIGKILL node I
    scripts/galera_cluster.py restart DIR I start node I again, wait for Synced
    scripts/galera_cluster.py down DIR      stop all nodes (SIGTERM, then SIGKILL)
    scripts/galera_cluster.py sql DIR I STATEMENT [DATABASE]

In-process (e.g. from a test runner loading this file with importlib):

    cluster = Cluster(workdir, nodes=3)
    try:
        cluster.start()                       # all Synced, cluster size 3
        url = cluster.url("db", first=0)      # mysql://root@h:p0,h:p1,h:p2/db
        cluster.sql(0, "CREATE DATABASE db")  # rows as lists of strings
        cluster.kill(1)                       # SIGKILL, waits for the exit
        cluster.restart(1)                    # rejoins (IST), waits for Synced
    finally:
        cluster.stop()                        # idempotent

Nodes started in-process are children of the calling process (in their own
session, so a Ctrl-C on the terminal does not reach them); stop() them in a
`finally`. Nodes started by `up` are detached and outlive the script.
DIR/cluster.json is written either way, so `down DIR` also cleans up after
a test runner that died without stop().

Timings on a 2-core machine: start() about 10-11 s; restart() after kill
about 4-9 s (mostly the survivors' evs.suspect_timeout of 5 s, which also
stalls writes on the survivors for ~5 s right after a kill -9). A killed
node rejoins with IST: restart() first runs `mariadbd --wsrep-recover` to
find its last committed position, and removes gvwstate.dat. When no other
node runs, restart() bootstraps a new cluster from that node's data.

When run as root, mariadbd runs with --user=root, and a small `rsync`
wrapper in DIR/bin keeps the SST rsync daemon from switching to 'nobody'
(which cannot write the root-owned data dirs).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
MARIADBD = "/usr/sbin/mariadbd"
HOST = "127.0.0.1"
MARKER = ".galera_cluster_node"
STATE_FILE = "cluster.json"
# Ports never handed out: MariaDB and Galera defaults, rsync.
RESERVED_PORTS = {873, 3306, 4444, 4567, 4568, 33060}
PORT_RANGE = (20000, 32000)  # below the Linux ephemeral range (32768-60999)


class ClusterError(RuntimeError):
    pass


def _log(msg):
    print("galera_cluster: %s" % msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# packages

def _which(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def _missing_packages():
    pkgs = []
    if not os.path.exists(PROVIDER):
        pkgs.append("galera-4")
    if not _which("rsync"):
        pkgs.append("rsync")
    # wsrep_sst_rsync needs one of these to see its rsync daemon listening.
    if not (_which("ss") or _which("lsof") or _which("sockstat")):
        pkgs.append("iproute2")
    if not os.path.exists(MARIADBD) or not _which("mariadb-install-db"):
        pkgs.append("mariadb-server")
    if not _which("mariadb"):
        pkgs.append("mariadb-client")
    return pkgs


def ensure_packages():
    """Installs galera-4, rsync, ... with apt-get when they are missing."""
    pkgs = _missing_packages()
    if not pkgs:
        return
    prefix = []
    if os.geteuid() != 0:
        if not _which("sudo"):
            raise ClusterError("need root (or sudo) to install: %s" % " ".join(pkgs))
        prefix = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + ["apt-get", "install", "-y", "--no-install-recommends"] + pkgs
    _log("installing " + " ".join(pkgs))
    # apt output goes to stderr: stdout of `up` carries only the URLs.
    if subprocess.call(install, env=env, stdout=sys.stderr.fileno()) != 0:
        _log("apt-get install failed, running apt-get update first")
        subprocess.check_call(prefix + ["apt-get", "update"], env=env,
                              stdout=sys.stderr.fileno())
        subprocess.check_call(install, env=env, stdout=sys.stderr.fileno())
    still = _missing_packages()
    if still:
        raise ClusterError("still missing after apt-get install: %s" % " ".join(still))


# --------------------------------------------------------------------------
# processes

def _pid_alive(pid):
    """The process exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_our_mariadbd(pid, datadir):
    """pid is a mariadbd running on datadir (guards against reused pids)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return ("--datadir=" + datadir) in args


def _port_free(port):
    for family, addr in ((socket.AF_INET, HOST), (socket.AF_INET, "0.0.0.0")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_ports(count, avoid=()):
    taken = set(RESERVED_PORTS) | set(avoid)
    ports = []
    for _ in range(10000):
        p = random.randint(*PORT_RANGE)
        if p in taken or not _port_free(p):
            continue
        taken.add(p)
        ports.append(p)
        if len(ports) == count:
            return ports
    raise ClusterError("could not find %d free ports" % count)


def _tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "(no log: %s)" % e


# --------------------------------------------------------------------------

class Node:
    def __init__(self, index, directory, ports=None, socket_path=None):
        self.index = index
        self.dir = directory
        self.datadir = os.path.join(directory, "data")
        self.pidfile = os.path.join(directory, "mariadbd.pid")
        self.error_log = os.path.join(directory, "error.log")
        self.stdout_log = os.path.join(directory, "stdout.log")
        self.socket = socket_path or os.path.join(directory, "mariadbd.sock")
        ports = ports or {}
        self.port = ports.get("port")
        self.galera_port = ports.get("galera_port")
        self.ist_port = ports.get("ist_port")
        self.sst_port = ports.get("sst_port")
        self.proc = None  # Popen when started by this process
        self.pid = None

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return _pid_alive(self.pid) and _is_our_mariadbd(self.pid, self.datadir)

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        if self.proc is not None:
            try:
                self.proc.wait(timeout=max(0.0, timeout))
                return True
            except subprocess.TimeoutExpired:
                return False
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.1)
        return not self.alive()

    def signal(self, sig):
        if not self.alive():
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def to_json(self):
        return {
            "index": self.index, "pid": self.pid if self.alive() else None,
            "port": self.port, "galera_port": self.galera_port,
            "ist_port": self.ist_port, "sst_port": self.sst_port,
            "dir": self.dir, "datadir": self.datadir, "socket": self.socket,
            "error_log": self.error_log,
            "url": "mysql://root@%s:%d/" % (HOST, self.port),
        }


class Cluster:
    """A private Galera cluster of `nodes` mariadbd processes under workdir."""

    def __init__(self, workdir, nodes=3, timeout=120.0, name=None,
                 provider_options="", extra_args=()):
        """provider_options: more wsrep provider options ("a=b;c=d");
        extra_args: more mariadbd options for every node. The evs timeouts
        are best left at their defaults: shortened ones (suspect 2 s) made
        nodes on a busy 2-core machine suspect each other and lose quorum."""
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.workdir = os.path.abspath(workdir)
        self.timeout = timeout
        self.provider_options = provider_options
        self.extra_args = list(extra_args)
        self.name = name or "galera_%d_%d" % (os.getpid(), random.randint(0, 1 << 30))
        ports = pick_ports(4 * nodes)
        self.nodes = []
        for i in range(nodes):
            d = os.path.join(self.workdir, "node%d" % i)
            sock = os.path.join(d, "mariadbd.sock")
            if len(sock) > 100:  # sun_path is 108 bytes
                sock = os.path.join(tempfile.mkdtemp(prefix="galera-sock-"), "node%d.sock" % i)
            self.nodes.append(Node(i, d, {
                "port": ports[4 * i], "galera_port": ports[4 * i + 1],
                "ist_port": ports[4 * i + 2], "sst_port": ports[4 * i + 3],
            }, sock))

    # ---- persistence (for the CLI) ----

    @property
    def state_file(self):
        return os.path.join(self.workdir, STATE_FILE)

    def save(self):
        with open(self.state_file + ".tmp", "w") as f:
            json.dump({"name": self.name, "provider_options": self.provider_options,
                       "extra_args": self.extra_args,
                       "nodes": [n.to_json() for n in self.nodes]}, f, indent=2)
            f.write("\n")
        os.replace(self.state_file + ".tmp", self.state_file)

    @classmethod
    def load(cls, workdir, timeout=120.0):
        """A Cluster for the nodes described by workdir/cluster.json."""
        workdir = os.path.abspath(workdir)
        with open(os.path.join(workdir, STATE_FILE)) as f:
            state = json.load(f)
        self = cls.__new__(cls)
        self.workdir = workdir
        self.timeout = timeout
        self.name = state["name"]
        self.provider_options = state.get("provider_options", "")
        self.extra_args = state.get("extra_args", [])
        self.nodes = []
        for n in state["nodes"]:
            node = Node(n["index"], n["dir"], n, n["socket"])
            node.pid = n.get("pid")
            self.nodes.append(node)
        return self

    # ---- addresses ----

    def __len__(self):
        return len(self.nodes)

    def port(self, i):
        return self.nodes[i].port

    def url(self, database="", first=0):
        """mysql://root@127.0.0.1:<p_first>,127.0.0.1:<p_next>,.../database"""
        n = len(self.nodes)
        hosts = ",".join("%s:%d" % (HOST, self.nodes[(first + k) % n].port) for k in range(n))
        return "mysql://root@%s/%s" % (hosts, database)

    def urls(self, database=""):
        """One single-host URL per node: mysql://root@127.0.0.1:<p_i>/database."""
        return ["mysql://root@%s:%d/%s" % (HOST, n.port, database) for n in self.nodes]

    def _gcomm(self):
        return "gcomm://" + ",".join("%s:%d" % (HOST, n.galera_port) for n in self.nodes)

    # ---- SQL ----

    def sql(self, i, statement, database=None, timeout=30):
        """Runs statement on node i with the mariadb client; rows as lists of str."""
        cmd = ["mariadb", "--no-defaults", "-h" + HOST, "-P%d" % self.nodes[i].port,
               "-uroot", "-N", "-B", "--connect-timeout=5", "-e", statement]
        if database:
            cmd.append(database)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise ClusterError("node %d: %s: %s" % (i, statement, r.stderr.strip()))
        return [line.split("\t") for line in r.stdout.splitlines()]

    def wsrep_status(self, i):
        """dict of wsrep_local_state_comment, wsrep_ready, wsrep_cluster_size,
        wsrep_cluster_status for node i."""
        rows = self.sql(i, "SHOW GLOBAL STATUS WHERE Variable_name IN ("
                           "'wsrep_local_state_comment','wsrep_ready',"
                           "'wsrep_cluster_size','wsrep_cluster_status')", timeout=10)
        return {r[0].lower(): r[1] for r in rows if len(r) >= 2}

    # ---- lifecycle ----

    def _args(self, node, bootstrap, start_position=None):
        args = [
            MARIADBD, "--no-defaults",
            "--datadir=" + node.datadir,
            "--socket=" + node.socket,
            "--pid-file=" + node.pidfile,
            "--log-error=" + node.error_log,
            "--port=%d" % node.port,
            "--bind-address=" + HOST,
            "--innodb-buffer-pool-size=64M",
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            "--wsrep-on=ON",
            "--wsrep-provider=" + PROVIDER,
            "--wsrep-cluster-name=" + self.name,
            "--wsrep-cluster-address=" + self._gcomm(),
            "--wsrep-node-name=node%d" % node.index,
            "--wsrep-node-address=%s:%d" % (HOST, node.galera_port),
            "--wsrep-node-incoming-address=%s:%d" % (HOST, node.port),
            "--wsrep-provider-options=gmcast.listen_addr=tcp://%s:%d;ist.recv_addr=%s:%d%s"
            % (HOST, node.galera_port, HOST, node.ist_port,
               (";" + self.provider_options.strip(";")) if self.provider_options else ""),
            "--wsrep-sst-receive-address=%s:%d" % (HOST, node.sst_port),
            "--wsrep-sst-method=rsync",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        args.extend(self.extra_args)
        if start_position:
            args.append("--wsrep-start-position=" + start_position)
        if bootstrap:
            args.append("--wsrep-new-cluster")
        return args

    def _prepare_dir(self, node):
        if os.path.isdir(node.dir):
            if not os.path.exists(os.path.join(node.dir, MARKER)):
                if os.listdir(node.dir):
                    raise ClusterError("%s exists and was not made by this script" % node.dir)
            shutil.rmtree(node.dir)
        os.makedirs(node.datadir)
        open(os.path.join(node.dir, MARKER), "w").close()

    def _install_db(self, node):
        cmd = ["mariadb-install-db", "--no-defaults", "--datadir=" + node.datadir,
               "--auth-root-authentication-method=normal", "--skip-test-db",
               "--innodb-buffer-pool-size=64M"]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        log = os.path.join(node.dir, "install-db.log")
        with open(log, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if rc != 0:
            raise ClusterError("mariadb-install-db failed for node %d:\n%s" % (node.index, _tail(log)))

    def _env(self):
        """Environment for mariadbd. As root, the joiner's rsync daemon (started
        by wsrep_sst_rsync) would switch to user 'nobody' and fail to write
        the root-owned data dir, so a wrapper first in PATH makes it stay root."""
        env = dict(os.environ)
        if os.geteuid() != 0:
            return env
        bindir = os.path.join(self.workdir, "bin")
        wrapper = os.path.join(bindir, "rsync")
        real = _which("rsync") or "/usr/bin/rsync"
        if os.path.realpath(real) == os.path.realpath(wrapper):
            real = "/usr/bin/rsync"
        text = ("#!/bin/sh\n"
                "# Written by galera_cluster.py: an rsync daemon started by root runs as\n"
                "# 'nobody' unless told otherwise; the SST receiver must write as root.\n"
                "for a in \"$@\"; do\n"
                "  [ \"$a\" = --daemon ] && exec %s \"$@\" -M uid=root -M gid=root\n"
                "done\n"
                "exec %s \"$@\"\n" % (real, real))
        os.makedirs(bindir, exist_ok=True)
        with open(wrapper + ".tmp", "w") as f:
            f.write(text)
        os.chmod(wrapper + ".tmp", 0o755)
        os.replace(wrapper + ".tmp", wrapper)
        # mariadbd prepends "<basedir>/bin" ("/usr//bin") to PATH before it runs
        # the SST script, unless that string already occurs in PATH; so it is
        # put at the end, and the wrapper stays first.
        env["PATH"] = os.pathsep.join(
            [bindir, env.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "/usr//bin"])
        return env

    def _spawn(self, node, bootstrap, start_position=None):
        if node.alive():
            raise ClusterError("node %d is already running (pid %s)" % (node.index, node.pid))
        for p in (node.pidfile, node.socket):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        out = open(node.stdout_log, "ab")
        try:
            node.proc = subprocess.Popen(
                self._args(node, bootstrap, start_position), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                close_fds=True, cwd=node.dir, env=self._env())
        finally:
            out.close()
        node.pid = node.proc.pid
        self.save()

    def _wait_synced(self, i, size=None, timeout=None):
        """Waits until node i is Synced and ready (and the cluster has `size` nodes)."""
        node = self.nodes[i]
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not node.alive():
                raise ClusterError("node %d (pid %s) exited while starting; %s:\n%s"
                                   % (i, node.pid, node.error_log, _tail(node.error_log)))
            try:
                st = self.wsrep_status(i)
                last = st
                if (st.get("wsrep_local_state_comment") == "Synced"
                        and st.get("wsrep_ready") == "ON"
                        and st.get("wsrep_cluster_status") == "Primary"
                        and (size is None or st.get("wsrep_cluster_size") == str(size))):
                    return st
            except (ClusterError, subprocess.TimeoutExpired) as e:
                last = str(e)
            time.sleep(0.5)
        raise ClusterError("node %d not Synced after %.0f s (last: %s); %s:\n%s"
                           % (i, timeout, last, node.error_log, _tail(node.error_log)))

    def start(self):
        """Initialises all nodes, bootstraps node 0, joins the others (SST)."""
        ensure_packages()
        os.makedirs(self.workdir, exist_ok=True)
        for node in self.nodes:
            self._prepare_dir(node)
        self.save()
        self._install_db(self.nodes[0])
        try:
            self._spawn(self.nodes[0], bootstrap=True)
            self._wait_synced(0, size=1)
            # Joiners start with empty data dirs and receive a full rsync SST.
            # Join them one at a time: one donor, one SST at a time.
            for i in range(1, len(self.nodes)):
                self._spawn(self.nodes[i], bootstrap=False)
                self._wait_synced(i, size=i + 1)
            for i in range(len(self.nodes)):
                self._wait_synced(i, size=len(self.nodes))
        except BaseException:
            self.stop()
            raise
        self.save()
        return self

    def _grastate(self, node):
        path = os.path.join(node.datadir, "grastate.dat")
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            return path, None, None
        uuid = re.search(r"^uuid:\s*(\S+)", text, re.M)
        seqno = re.search(r"^seqno:\s*(-?\d+)", text, re.M)
        return path, (uuid.group(1) if uuid else None), (int(seqno.group(1)) if seqno else None)

    def _recover_position(self, node):
        """After a crash grastate.dat says seqno -1; asks InnoDB for the last
        committed position (mariadbd --wsrep-recover) so the node can rejoin
        with IST instead of a full SST."""
        _, uuid, seqno = self._grastate(node)
        if uuid is None or seqno is None or seqno >= 0:
            return None
        log = os.path.join(node.dir, "wsrep-recover.log")
        args = [a for a in self._args(node, bootstrap=False)
                if not a.startswith("--log-error=")]
        args += ["--log-error=" + log, "--wsrep-recover", "--skip-networking"]
        try:
            os.unlink(log)
        except FileNotFoundError:
            pass
        subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=self.timeout, cwd=node.dir,
                       env=self._env())
        m = re.findall(r"WSREP: Recovered position:\s*(\S+:-?\d+)", _tail(log, 200))
        if m and not m[-1].endswith(":-1"):
            return m[-1]
        return None

    def restart(self, i, timeout=None):
        """Starts node i again and waits until it is Synced and all running nodes
        are in the cluster. It joins the running nodes (IST, or SST when IST is
        not possible); when no other node runs, it bootstraps a new cluster
        from its own data (setting safe_to_bootstrap: 1 in grastate.dat)."""
        node = self.nodes[i]
        if node.alive():
            raise ClusterError("node %d is running" % i)
        others = [n for n in self.nodes if n is not node and n.alive()]
        bootstrap = not others
        position = self._recover_position(node)
        if not bootstrap:
            # gvwstate.dat (left by a kill -9) makes the node reuse its old
            # identity and try to restore the old primary component, which
            # delays the join by evs timeouts (~15 s); a joiner needs neither.
            try:
                os.unlink(os.path.join(node.datadir, "gvwstate.dat"))
            except FileNotFoundError:
                pass
        if bootstrap:
            path, _, _ = self._grastate(node)
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read()
                new = re.sub(r"^safe_to_bootstrap:\s*\d+", "safe_to_bootstrap: 1", text, flags=re.M)
                if new != text:
                    with open(path, "w") as f:
                        f.write(new)
        self._spawn(node, bootstrap=bootstrap, start_position=position)
        st = self._wait_synced(i, size=len(others) + 1, timeout=timeout)
        self.save()
        return st

    def kill(self, i, timeout=30):
        """SIGKILLs node i and waits for it to be gone."""
        node = self.nodes[i]
        node.signal(signal.SIGKILL)
        if not node.wait_exit(timeout):
            raise ClusterError("node %d (pid %s) survived SIGKILL" % (i, node.pid))
        self.save()

    def stop(self, timeout=60):
        """SIGTERM to every running node, SIGKILL after timeout. Idempotent."""
        running = [n for n in self.nodes if n.alive()]
        for n in running:
            n.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in running:
            if not n.wait_exit(max(0.0, deadline - time.monotonic())):
                _log("node %d (pid %s) ignored SIGTERM, sending SIGKILL" % (n.index, n.pid))
                n.signal(signal.SIGKILL)
                n.wait_exit(10)
        if os.path.exists(self.state_file):
            self.save()

    def running(self):
        """Indexes of the nodes whose mariadbd is running."""
        return [n.index for n in self.nodes if n.alive()]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# CLI

def _cli_status(cluster):
    rc = 0
    for n in cluster.nodes:
        if not n.alive():
            print("node %d: down (port %d)" % (n.index, n.port))
            rc = 1
            continue
        try:
            st = cluster.wsrep_status(n.index)
            print("node %d: %s cluster_size=%s ready=%s (pid %d, port %d)" % (
                n.index, st.get("wsrep_local_state_comment"), st.get("wsrep_cluster_size"),
                st.get("wsrep_ready"), n.pid, n.port))
            if st.get("wsrep_local_state_comment") != "Synced":
                rc = 1
        except ClusterError as e:
            print("node %d: running (pid %d) but not answering: %s" % (n.index, n.pid, e))
            rc = 1
    return rc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="start a cluster (detached) in DIR")
    p.add_argument("dir")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--provider-options", default="",
                   help='more wsrep provider options, "a=b;c=d"')
    for name in ("down", "status"):
        sub.add_parser(name).add_argument("dir")
    for name in ("kill", "restart"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("node", type=int)
    p = sub.add_parser("sql")
    p.add_argument("dir")
    p.add_argument("node", type=int)
    p.add_argument("statement")
    p.add_argument("database", nargs="?")
    a = ap.parse_args(argv)

    try:
        if a.cmd == "up":
            state = os.path.join(a.dir, STATE_FILE)
            if os.path.exists(state) and Cluster.load(a.dir).running():
                print("a cluster is already running in %s" % a.dir, file=sys.stderr)
                return 1
            t0 = time.monotonic()
            cluster = Cluster(a.dir, nodes=a.nodes, timeout=a.timeout,
                              provider_options=a.provider_options)
            cluster.start()
            _log("cluster up in %.1f s" % (time.monotonic() - t0))
            for n in cluster.nodes:
                print("node %d: mysql://root@%s:%d/" % (n.index, HOST, n.port))
            return 0
        cluster = Cluster.load(a.dir)
        if a.cmd == "down":
            cluster.stop()
            return 0
        if a.cmd == "status":
            return _cli_status(cluster)
        if a.cmd == "kill":
            cluster.kill(a.node)
            return 0
        if a.cmd == "restart":
            t0 = time.monotonic()
            st = cluster.restart(a.node)
            _log("node %d Synced, cluster size %s, in %.1f s"
                 % (a.node, st.get("wsrep_cluster_size"), time.monotonic() - t0))
            return 0
        if a.cmd == "sql":
            for row in cluster.sql(a.node, a.statement, a.database):
                print("\t".join(row))
            return 0
    except (ClusterError, OSError) as e:
        print("galera_cluster: %s" % e, file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
