"""A throw-away PostgreSQL cluster for the tests of the PostgreSQL store backend.

initdb in a temporary directory, the server on a free loopback port (its unix socket in that
directory too, so nothing touches /var/run/postgresql), trust authentication for the superuser
"coffer", and everything removed again on stop. Needs the server binaries of Debian's
`postgresql` package (scripts/install-deps.sh installs it); PostgreSQL refuses to run as root, so
under root the server runs as the package's "postgres" user.

As a program it wraps a command with a cluster, for CTest:

    pg_cluster.py run -- COMMAND ARGS...

starts a cluster, creates the database "coffer_test", runs COMMAND with COFFER_TEST_PG_URL set to
its URL, stops the cluster and exits with COMMAND's status, or with 77 (CTest's skip code) and a
message when the PostgreSQL binaries are missing.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SKIP_CODE = 77
SUPERUSER = "coffer"


def _bin_dir():
    """The newest Debian server build (/usr/lib/postgresql/N/bin), or COFFER_PG_BIN."""
    env = os.environ.get("COFFER_PG_BIN")
    if env:
        return env
    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(d, "initdb"))]
    dirs.sort(key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    return dirs[-1] if dirs else None


def unavailable_reason():
    """None when a cluster can be started here, else why not."""
    d = _bin_dir()
    if d is None:
        return "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin; install Debian's postgresql)"
    for tool in ("initdb", "pg_ctl", "psql", "createdb"):
        if not os.path.exists(os.path.join(d, tool)):
            return "%s missing in %s" % (tool, d)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgCluster:
    def __init__(self):
        self.bin = _bin_dir()
        self.dir = None
        self.port = None

    def _server_cmd(self, args):
        """Server-side tools run as postgres when we are root."""
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + args
        return args

    def _tool(self, name):
        return os.path.join(self.bin, name)

    def start(self):
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.dir = tempfile.mkdtemp(prefix="coffer-pg-")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.dir, "data")
        r = subprocess.run(self._server_cmd([self._tool("initdb"), "-D", data, "-U", SUPERUSER, "--auth=trust",
                                             "-E", "UTF8", "--no-locale", "--no-sync"]),
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            self.stop()
            raise RuntimeError("initdb failed: %s" % r.stderr.decode(errors="replace"))
        for attempt in range(3):
            self.port = _free_port()
            # fsync off: a test cluster never outlives its machine; commit semantics are unchanged.
            opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
                    "-c max_connections=200" % (self.port, self.dir))
            r = subprocess.run(self._server_cmd([self._tool("pg_ctl"), "-D", data, "-o", opts, "-l",
                                                 os.path.join(self.dir, "server.log"), "-w", "-t", "60",
                                                 "start"]),
                               capture_output=True, timeout=90)
            if r.returncode == 0:
                return self
            time.sleep(0.2)
        log = self.server_log()
        self.stop()
        raise RuntimeError("pg_ctl start failed: %s\n%s" % (r.stderr.decode(errors="replace"), log[-2000:]))

    def server_log(self):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except (OSError, TypeError):
            return ""

    def url(self, db="postgres"):
        return "postgres://%s@127.0.0.1:%d/%s?sslmode=disable" % (SUPERUSER, self.port, db)

    def createdb(self, name):
        subprocess.run([self._tool("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name],
                       check=True, capture_output=True, timeout=60)
        return self.url(name)

    def psql(self, sql, db="postgres"):
        """Runs SQL; returns stdout (unaligned, tuples only)."""
        r = subprocess.run([self._tool("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", self.url(db), "-c", sql],
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr.decode(errors="replace"))
        return r.stdout.decode()

    def pg_ctl(self, *args):
        data = os.path.join(self.dir, "data")
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
                "-c max_connections=200" % (self.port, self.dir))
        return subprocess.run(self._server_cmd([self._tool("pg_ctl"), "-D", data, "-o", opts, "-l",
                                                os.path.join(self.dir, "server.log"), "-w", "-t", "60"]
                                               + list(args)),
                              capture_output=True, timeout=90)

    def stop(self):
        if self.dir is None:
            return
        if os.path.exists(os.path.join(self.dir, "data", "postmaster.pid")):
            self.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


_shared = None


def shared():
    """One cluster for the whole test process, stopped and removed when the process exits."""
    global _shared
    if _shared is None:
        import atexit
        _shared = PgCluster().start()
        atexit.register(_shared.stop)
    return _shared


def main(argv):
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        sys.stderr.write("usage: pg_cluster.py run -- COMMAND [ARGS...]\n")
        return 2
    reason = unavailable_reason()
    if reason:
        print("SKIP: no PostgreSQL for this test: %s" % reason)
        return SKIP_CODE
    cluster = PgCluster().start()
    try:
        env = dict(os.environ)
        env["COFFER_TEST_PG_URL"] = cluster.createdb("coffer_test")
        return subprocess.call(argv[2:], env=env)
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
