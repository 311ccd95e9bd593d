#!/usr/bin/env python3
"""Where tlstap spends its CPU under load (not part of run-all): the HTTPS keep-alive load of
benchmark 1, or iperf3 at BENCH_PROFILE_RATE with `--load iperf`, while `perf record -e cpu-clock`
samples the daemon; prints the hottest symbols (self time) and the kernel/user split.

usage: profile.py /abs/path/tlstap [--load https|iperf] [seconds]   (needs linux-perf)"""
import os
import subprocess
import sys
import time

from benchlib import Proc, Tlstap, cleanup, log, sh, start_nginx, two_namespace_lab, workdir, wrk


def main():
    binary = sys.argv[1]
    load = sys.argv[sys.argv.index("--load") + 1] if "--load" in sys.argv else "https"
    seconds = int(sys.argv[-1]) if sys.argv[-1].isdigit() else 5
    scratch = workdir("profile")
    lab = two_namespace_lab("p", 4)
    if load == "https":
        start_nginx(lab["server_ns"], os.path.join(scratch, "nginx"), lab["server_ip"])
    else:
        Proc(["ip", "netns", "exec", lab["server_ns"], "iperf3", "-s", "-p", "5201"],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    tap = Tlstap(binary, os.path.join(scratch, "seg"), "--interfaces", lab["server_if"])
    tap.wait_ready()
    data = os.path.join(scratch, "perf.data")
    perf = Proc(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-g", "-p", str(tap.pid), "-o", data],
                stop_signal=2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if load == "https":
        result = wrk(lab["client_ns"], f"https://{lab['server_ip']}/", seconds, 32)
    else:
        result = sh("ip", "netns", "exec", lab["client_ns"], "iperf3", "-c", lab["server_ip"], "-p", "5201",
                    "-t", str(seconds), "-b", os.environ.get("BENCH_PROFILE_RATE", "2G"))[-300:]
    perf.stop()
    log(f"load result: {result}; status {tap.status()['packets']} packets")
    tap.stop()
    for sort in ("dso", "sym"):
        out = sh("perf", "report", "-i", data, "--no-children", "--sort", sort, "--stdio", "-g", "none",
                 "--percent-limit", "1.5", timeout=300)
        print("\n".join(line for line in out.splitlines() if line and not line.startswith("#")))


if __name__ == "__main__":
    main()
