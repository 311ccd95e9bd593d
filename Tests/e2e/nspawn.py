"""A real systemd host for tests: a debootstrapped Debian bookworm booted with systemd-nspawn.

The root tree is built once per machine with debootstrap (minbase + systemd + the .deb's runtime
dependencies + a TLS server and client, so nothing inside needs the network) and cached under
/var/cache/tlstap-test/: a tarball (what CI could carry between runs) and the unpacked tree the container
boots from. `--volatile=overlay` puts a tmpfs over that tree, so every boot starts clean and the cache
is never written to. The tree holds no Swift and no build tools: the .deb must stand on its own.

Usage:
    with BootedHost(workdir) as host:
        host.copy_in(deb, "/root/tlstap.deb")
        host.run("dpkg", "-i", "/root/tlstap.deb")
"""
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tarfile
import time

CACHE_DIR = "/var/cache/tlstap-test"
SUITE = "bookworm"

# What the booted host needs: an init, the .deb's runtime dependencies (the Depends line of
# packaging/build-deb.sh), the maintainer-script helpers dh_installsystemd relies on (in
# init-system-helpers, part of minbase), and a local TLS server + client for traffic.
PACKAGES = [
    "systemd", "systemd-sysv", "dbus",
    "libbpf1", "libelf1", "libzstd1", "libsystemd0", "zlib1g", "libstdc++6", "libgcc-s1",
    "nginx-light", "curl", "openssl", "ca-certificates", "iproute2",
]


def mirror_uri() -> str:
    """The Debian mirror this machine uses (deb822 sources), so debootstrap goes where apt goes."""
    for path in ("/etc/apt/sources.list.d/debian.sources",):
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.startswith("URIs:"):
                        uri = line.split()[1]
                        if "security" not in uri:
                            return uri
    return "http://deb.debian.org/debian"


def _cache_key() -> str:
    return hashlib.sha256(" ".join([SUITE, *sorted(PACKAGES)]).encode()).hexdigest()[:12]


def _run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\n"
                             f"stderr:\n{result.stderr[-4000:]}")
    return result


def ensure_rootfs() -> str:
    """The unpacked, cached root tree; built with debootstrap (≈1 min) when absent.

    A file lock serialises concurrent test runs; the tree appears under its final name only when
    complete, so an interrupted build is simply redone."""
    key = _cache_key()
    tree = os.path.join(CACHE_DIR, f"{SUITE}-{key}")
    tarball = tree + ".tar"
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(os.path.join(CACHE_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(tree, "lib", "systemd", "systemd")):
            return tree
        partial = tree + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        if os.path.exists(tarball):
            os.makedirs(partial)
            _run(["tar", "-C", partial, "--numeric-owner", "-xpf", tarball])
        else:
            assert shutil.which("debootstrap"), "debootstrap is required (make deps-test installs it)"
            _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, partial,
                  mirror_uri()], timeout=900)
            _prepare(partial)
            _run(["tar", "-C", partial, "--numeric-owner", "-cpf", tarball + ".partial", "."])
            os.rename(tarball + ".partial", tarball)
        shutil.rmtree(tree, ignore_errors=True)
        os.rename(partial, tree)
        return tree


def _prepare(root: str):
    """Make the tree boot quietly in a container: no getty, no network wait, a machine-id per boot."""
    with open(os.path.join(root, "etc", "hostname"), "w") as f:
        f.write("tlstap-test\n")
    # An empty machine-id makes systemd generate a transient one at each boot.
    open(os.path.join(root, "etc", "machine-id"), "w").close()
    # Packages installed by the test start their services (policy-rc.d absent = allowed).
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(root, "usr", "sbin", "policy-rc.d"))
    # nginx from the tree must not occupy port 80 at boot; the test starts what it needs.
    wants = os.path.join(root, "etc", "systemd", "system", "multi-user.target.wants", "nginx.service")
    with contextlib.suppress(FileNotFoundError):
        os.remove(wants)
    os.makedirs(os.path.join(root, "var", "cache", "apt", "archives"), exist_ok=True)
    for name in os.listdir(os.path.join(root, "var", "cache", "apt", "archives")):
        if name.endswith(".deb"):
            os.remove(os.path.join(root, "var", "cache", "apt", "archives", name))


def _children(pid: int):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


class BootedHost:
    """One booted container. Owns the systemd-nspawn process and the bpffs mount it binds in;
    `close()` powers it off (SIGTERM to nspawn = orderly shutdown) and unmounts."""

    def __init__(self, workdir: str, private_network: bool = True):
        self.root = ensure_rootfs()
        self.workdir = workdir
        self.bpffs = os.path.join(workdir, "bpffs")
        os.makedirs(self.bpffs, exist_ok=True)
        _run(["mount", "-t", "bpf", "bpf", self.bpffs])
        self.log = open(os.path.join(workdir, "nspawn.log"), "w")
        cmd = ["systemd-nspawn", "-D", self.root, "-b", "--register=no", "--keep-unit", "-q",
               "--volatile=overlay", "--capability=all",
               "--system-call-filter=bpf perf_event_open",
               f"--bind={self.bpffs}:/sys/fs/bpf",
               f"--machine=sv{os.getpid()}"]
        if private_network:
            cmd.append("--private-network")
        # The console is not a tty here: nspawn would otherwise ask for one.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "SYSTEMD_NSPAWN_TMPFS_TMP": "1"})
        self.pid = None
        try:
            self._wait_booted()
        except BaseException:
            self.close()
            raise

    def _wait_booted(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}: {self._log_tail()}")
            if self.pid is None:
                self.pid = self._find_init()
            if self.pid and os.path.exists(f"/proc/{self.pid}/root/run/systemd/private"):
                # The manager listens; wait until the boot transaction is done (running or degraded).
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.1)
        raise AssertionError(f"container did not boot in {timeout}s: {self._log_tail()}")

    def _find_init(self):
        """The container's PID 1 as seen from the host: the descendant of nspawn named systemd."""
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in _children(pid):
                try:
                    with open(f"/proc/{child}/comm") as f:
                        if f.read().strip() == "systemd":
                            return child
                except FileNotFoundError:
                    continue
                todo.append(child)
        return None

    def _log_tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-3000:]

    def command(self, *cmd):
        """The host command line that runs `cmd` inside the container (all its namespaces, its root)."""
        return ["nsenter", "-t", str(self.pid), "-a", "--", "env", "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", *cmd]

    def popen(self, *cmd, **kw):
        return subprocess.Popen(self.command(*cmd), **kw)

    def run(self, *cmd, check=True, timeout=60, input=None):
        """Runs a command inside the container and waits for it."""
        result = subprocess.run(self.command(*cmd), capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"in container: {list(cmd)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}")
        return result

    def path(self, inside: str) -> str:
        """The host path of a file inside the running container (through its root)."""
        return f"/proc/{self.pid}/root/{inside.lstrip('/')}"

    def copy_in(self, src: str, dst: str):
        shutil.copyfile(src, self.path(dst))

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        subprocess.run(["umount", self.bpffs], capture_output=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    # `python3 Tests/e2e/nspawn.py` builds (or finds) the cached tree: lets CI warm the cache up front.
    print(ensure_rootfs())
