"""Runs the real `tlstap run` as a child process with a NOTIFY_SOCKET the test owns, so a test knows
exactly when the daemon says READY=1 and what it reports, and can stop it the way systemd would."""
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket. Like systemd it reads all
    the time (a thread): sd_notify blocks once the socket's queue is full, and the daemon sends
    STATUS= and WATCHDOG=1 from its pipeline thread."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tlstap-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, {key: value})
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str = None, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                seen = [fields for _, fields in self.messages]
            for fields in seen:
                if key in fields and (value is None or fields[key] == value):
                    return fields
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {key}={value or '*'} within {timeout}s; got {seen}")
            time.sleep(0.02)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Daemon:
    """`tlstap run ARGS…` with its own notify socket; stderr goes to a file the test can read."""

    def __init__(self, binary: str, segment_dir: str, *args: str, env=None):
        self.segment_dir = str(segment_dir)
        self.notify = NotifySocket()
        self.log_path = os.path.join(self.notify.dir, "stderr.log")
        environment = dict(os.environ)
        environment.pop("JOURNAL_STREAM", None)
        environment["NOTIFY_SOCKET"] = self.notify.path
        environment.update(env or {})
        self.log = open(self.log_path, "w")
        self.final_stderr = None
        self.process = subprocess.Popen(
            [binary, "run", "--segment-dir", self.segment_dir, *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=environment)

    def wait_ready(self, timeout: float = 60.0):
        try:
            return self.notify.wait_for("READY", "1", timeout)
        except AssertionError:
            raise AssertionError(f"tlstap never became ready (exit {self.process.poll()}):\n{self.stderr()}")

    def stderr(self) -> str:
        if self.final_stderr is not None:
            return self.final_stderr
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.log.close()

    def finished_segments(self):
        return sorted(glob.glob(os.path.join(self.segment_dir, "*.pcapng.zst")))

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.final_stderr = self.stderr()
        self.notify.close()
