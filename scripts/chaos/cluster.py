"""The chaos run's own PostgreSQL and its service instances.

The run restarts PostgreSQL, so it never touches the project's private
cluster (scripts/db.sh), which others may be testing on at the same time: it
initdb's a throwaway cluster in /tmp/billing-ledger-chaos.XXXXXX on a port
in 65000-65499 (see pick_port) and removes it at the end (CHAOS_KEEP=1 keeps
it for a post-mortem). As root the server runs as the `postgres` system
user, like scripts/db.sh, because PostgreSQL refuses to run as root.
"""

import glob
import http.client
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def port_free(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
            return False
        except OSError:
            pass
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(taken=()):
    """A free port in 65000-65499: above Linux's default ephemeral range
    (32768-60999), so no outgoing connection takes it while a killed
    process is down, and above scripts/replica.sh's (61000-64999)."""
    port = 65000 + random.randrange(500)
    for _ in range(500):
        if port not in taken and port_free(port):
            return port
        port = 65000 + (port - 65000 + 1) % 500
    raise RuntimeError("no free port in 65000-65499")


def pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    if os.geteuid() != 0:
        raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql "
                         "(install Debian's postgresql package, or run scripts/db.sh start as root)")
    log("PostgreSQL server binaries not found: installing Debian's postgresql package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return pg_bin()


class Postgres:
    """A throwaway cluster: database `chaos`, superuser `billing`."""

    USER = "billing"
    DB = "chaos"

    def __init__(self):
        self.bin = pg_bin()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.dir = tempfile.mkdtemp(prefix="billing-ledger-chaos.", dir="/tmp")
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        self.data = os.path.join(self.dir, "data")
        self.log_file = os.path.join(self.dir, "server.log")
        self.password = secrets.token_hex(16)
        self.port = pick_port()
        psql = os.path.join(self.bin, "psql")
        self.psql_bin = psql if os.path.exists(psql) else "psql"

    def _as_pg(self, argv):
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else argv

    def _pg(self, *argv, check=True):
        return subprocess.run(self._as_pg(list(argv)), check=check, text=True, capture_output=True)

    def init(self):
        pwfile = os.path.join(self.dir, "pw.tmp")
        with open(pwfile, "w") as f:
            f.write(self.password)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._pg(f"{self.bin}/initdb", "-D", self.data, "-U", self.USER, f"--pwfile={pwfile}",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                 "--locale=C.UTF-8")
        os.unlink(pwfile)
        conf = os.path.join(self.data, "postgresql.conf")
        # Appended as the postgres user owns the file; fsync and
        # synchronous_commit stay on: a crash restart must keep every
        # acknowledged commit.
        settings = (f"\n# billing-ledger chaos cluster\nport = {self.port}\n"
                    "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    "max_connections = 200\nshared_buffers = 128MB\n")
        subprocess.run(self._as_pg(["sh", "-c", f"cat >> {conf}"]), input=settings, text=True, check=True)
        self.start()
        self.psql(f"CREATE DATABASE {self.DB}", db="postgres")

    def start(self):
        r = self._pg(f"{self.bin}/pg_ctl", "-D", self.data, "-l", self.log_file, "-w", "-t", "120",
                     "start", check=False)
        if r.returncode != 0:
            tail = open(self.log_file).read()[-2000:] if os.path.exists(self.log_file) else ""
            raise RuntimeError(f"PostgreSQL did not start: {r.stderr}\n{tail}")
        self.wait_ready()

    def stop(self, mode="fast"):
        self._pg(f"{self.bin}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "120", "stop")

    def wait_ready(self, timeout=60):
        end = time.time() + timeout
        while True:
            r = subprocess.run([self.psql_bin, "-X", "-Atq", self.url("postgres"), "-c", "select 1"],
                               capture_output=True, text=True, env=self._env())
            if r.returncode == 0:
                return
            if time.time() > end:
                raise RuntimeError(f"PostgreSQL not ready: {r.stderr}")
            time.sleep(0.2)

    def restart(self, mode):
        self.stop(mode)
        time.sleep(0.5)
        self.start()

    def url(self, db=None):
        return f"postgres://{self.USER}:{self.password}@127.0.0.1:{self.port}/{db or self.DB}"

    def _env(self):
        return {**os.environ, "PGCONNECT_TIMEOUT": "5"}

    def psql(self, sql, db=None):
        r = subprocess.run([self.psql_bin, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.url(db), "-c", sql],
                           capture_output=True, text=True, env=self._env())
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}\n{sql}")
        return r.stdout

    def rows(self, sql):
        """The rows of `sql` as a list of dicts (through json_agg, so numerics
        come back as exact decimal text)."""
        out = self.psql(f"SELECT coalesce(json_agg(chaos_row), '[]')::text FROM ({sql}) chaos_row")
        return json.loads(out, parse_float=str, parse_int=int)

    def destroy(self, keep=False):
        try:
            self._pg(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        finally:
            if keep:
                with open(os.path.join(self.dir, "url"), "w") as f:
                    f.write(self.url() + "\n")
                os.chmod(os.path.join(self.dir, "url"), 0o600)
                log(f"kept the cluster in {self.dir}, stopped: start it with pg_ctl -D {self.data} start "
                    f"(as {self.run_as or 'yourself'}); its URL is in {self.dir}/url")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)


class Instance:
    """One `billing-ledger serve` on its own loopback port."""

    def __init__(self, index, binary, env, log_dir, taken_ports):
        self.index = index
        self.binary = binary
        self.port = pick_port(taken_ports)
        self.env = {**env, "BIND_ADDR": f"127.0.0.1:{self.port}"}
        self.log_path = os.path.join(log_dir, f"instance-{index}.log")
        self.proc = None
        self.starts = 0

    def start(self):
        out = open(self.log_path, "a")
        out.write(f"--- start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n")
        out.flush()
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT)
        out.close()
        self.starts += 1

    def wait_ready(self, timeout=90):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance {self.index} exited ({self.proc.returncode}); see {self.log_path}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/readyz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"instance {self.index} not ready after {timeout}s; see {self.log_path}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
