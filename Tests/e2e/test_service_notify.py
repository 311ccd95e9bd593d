"""The sd_notify protocol of `tlstap run`, against a NOTIFY_SOCKET this test owns (as systemd would):
READY=1 only once capture is attached, STATUS=, WATCHDOG=1 at half of WATCHDOG_USEC, SIGHUP →
RELOADING=1 + MONOTONIC_USEC= … READY=1 with the re-read config applied, SIGTERM → STOPPING=1 and exit 0
with the last segment finished.

Capture is limited to the loopback of a namespace the test makes, so nothing else on the machine is
touched."""
import os
import signal
import socket
import subprocess
import threading
import time

from conftest import need, run

WATCHDOG_USEC = 2_000_000


class NotifySocket:
    """An AF_UNIX datagram socket like systemd's notify socket; records (monotonic time, assignments)."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, key, after=0, timeout=20.0, proc=None):
        """The first message at index ≥ `after` that carries `key`; returns (index, time, fields)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, (stamp, fields) in enumerate(self.snapshot()):
                if index >= after and key in fields:
                    return index, stamp, fields
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"tlstap exited {proc.returncode} before sending {key}")
            time.sleep(0.05)
        raise AssertionError(f"no {key} within {timeout}s; got {[f for _, f in self.snapshot()]}")

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def tagged_pings_in(segments, tag):
    """How many ICMP echo requests whose payload carries `tag` the segments hold, read by tshark."""
    count = 0
    for segment in segments:
        out = run(["tshark", "-r", str(segment), "-Y", f"icmp.type == 8 && data.data contains {tag}",
                   "-T", "fields", "-e", "frame.number"]).stdout
        count += len(out.split())
    return count


def finished(directory):
    return sorted(p for p in directory.iterdir() if p.name.endswith(".pcapng.zst"))


def test_notify_protocol(tlstap, tmp_path, make_netns):
    need("tshark")
    need("zstd")
    ns = make_netns("sv")
    inode = os.stat(f"/run/netns/{ns.name}").st_ino
    # A resident process, so the namespace is found through /proc as well as /run/netns.
    resident = ns.popen("sleep", "120")
    segment_dir = tmp_path / "segments"
    config = tmp_path / "tlstap.toml"
    config.write_text('rotate-every = "1h"\nflush-every = "200ms"\n')
    notify = NotifySocket(tmp_path / "notify")
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "WATCHDOG_PID")}
    env.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    stderr = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen([tlstap, "run", "--config", str(config), "--segment-dir", str(segment_dir),
                             "--interfaces", f"netns:{inode}/lo"], env=env, stdout=stderr, stderr=stderr)
    try:
        # READY=1 means attached: a ping sent the moment READY arrives is already captured.
        ready_index, ready_at, ready = notify.wait_for("READY", proc=proc)
        ns.exec("ping", "-c", "1", "-p", "5354415254", "127.0.0.1")  # payload "START"
        statuses = [f["STATUS"] for _, f in notify.snapshot() if "STATUS" in f]
        assert statuses and statuses[-1].strip(), "no STATUS= line"

        # WATCHDOG=1 from the work loop at half of WATCHDOG_USEC (1 s).
        time.sleep(3.6)
        pings = [t for t, f in notify.snapshot() if f.get("WATCHDOG") == "1" and t >= ready_at]
        assert len(pings) >= 3, f"{len(pings)} WATCHDOG=1 in 3.6 s"
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert all(0.4 <= g <= 1.6 for g in gaps), f"watchdog gaps {gaps}"

        # SIGHUP: RELOADING=1 with the current CLOCK_MONOTONIC in µs, then READY=1; the new rotation applies.
        config.write_text('rotate-every = "1s"\nflush-every = "200ms"\n')
        before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        proc.send_signal(signal.SIGHUP)
        reload_index, _, reloading = notify.wait_for("RELOADING", after=ready_index + 1, proc=proc)
        after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert reloading["RELOADING"] == "1"
        assert before_us <= int(reloading["MONOTONIC_USEC"]) <= after_us + 1_000_000, reloading
        notify.wait_for("READY", after=reload_index, timeout=10, proc=proc)
        traffic = ns.popen("ping", "-i", "0.2", "-p", "4d4944", "127.0.0.1",  # payload "MID"
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 6
            while len(finished(segment_dir)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(finished(segment_dir)) >= 3, \
                f"rotate-every 1s after reload: finished {[p.name for p in finished(segment_dir)]}"
        finally:
            traffic.terminate()
            traffic.wait()

        # SIGTERM: STOPPING=1, exit 0, the last segment finished (renamed, complete zstd, readable).
        ns.exec("ping", "-c", "1", "-p", "454e44", "127.0.0.1")  # payload "END"
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", timeout=10)
        assert proc.wait(timeout=15) == 0, f"exit {proc.returncode}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        stderr.close()
        resident.kill()
        resident.wait()

    leftovers = [p.name for p in segment_dir.iterdir() if p.is_file() and not p.name.endswith(".pcapng.zst")]
    assert not leftovers, f"unfinished files after SIGTERM: {leftovers}"
    segments = finished(segment_dir)
    for segment in segments:
        run(["zstd", "-t", "-q", str(segment)])
    assert tagged_pings_in(segments, "53:54:41:52:54") >= 1, "ping sent at READY=1 was not captured"
    assert tagged_pings_in(segments, "45:4e:44") >= 1, "ping sent just before SIGTERM is missing from the last segment"

