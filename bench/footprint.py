#!/usr/bin/env python3
"""Benchmark 4 — footprint: tlstap RSS, CPU and fds at idle, and how many segment bytes each captured
byte costs (zstd, the level tlstap uses) against gzip of the same PcapNG (`tlstap export -o - | gzip`).

Idle: tlstap --interfaces 'bn*' with no traffic for BENCH_IDLE_SECONDS (it still discovers every
namespace of the host, it just attaches to none but ours).
Compression: three captures on the server end of one veth, each a fresh daemon:
  https     wrk keep-alive HTTPS against nginx (TLS records: incompressible payload, small packets)
  iperf     iperf3 at 1 Gbit/s, full snaplen (random payload, 64 KB GSO packets)
  iperf-128 the same at --snaplen 128 (headers only)
For each: captured bytes (status `bytes`, original lengths), segment bytes, export (uncompressed PcapNG)
bytes, gzip -6 and zstd -3 of that export. Loads under which RSS/CPU are measured while busy are in the
other benchmarks (their `watcher` fields).

usage: footprint.py /abs/path/tlstap [result.json]"""
import os
import subprocess
import time

from benchlib import (Proc, Sampler, Tlstap, binary_from_argv, emit, fd_count, libraries_summary, log, rss_bytes,
                      sh, start_nginx, status_counters, two_namespace_lab, workdir, wrk, segment_bytes, segments)

IDLE_SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", "10"))
LEVEL = 3  # tlstap's default --zstd-level; passed explicitly so the number below is the level used


def piped_size(command):
    """Bytes a shell pipeline writes to stdout, and how long it took."""
    t0 = time.monotonic()
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command + " | wc -c"], capture_output=True, text=True,
                         check=True, timeout=600)
    return int(out.stdout.strip()), round(time.monotonic() - t0, 2)


def capture(binary, scratch, lab, name, snaplen, load):
    segdir = os.path.join(scratch, f"seg-{name}")
    tap = Tlstap(binary, segdir, "--interfaces", lab["server_if"], "--snaplen", str(snaplen),
                 "--zstd-level", str(LEVEL))
    tap.wait_ready()
    sampler = Sampler([tap.pid]).start()
    load()
    time.sleep(1.0)
    status = tap.fresh_status()
    busy = sampler.stop()
    tap.stop()
    counters = status_counters(status)
    paths = " ".join(segments(segdir))
    export = f"{binary} export --segment-dir {segdir} -o -"
    export_bytes, export_s = piped_size(export)
    gzip_bytes, gzip_s = piped_size(f"{export} | gzip -6")
    zstd_bytes, zstd_s = piped_size(f"{export} | zstd -{LEVEL} -q -c")
    zstd1_bytes, zstd1_s = piped_size(f"{export} | zstd -1 -q -c")
    seg = segment_bytes(segdir)
    result = {"snaplen": snaplen, "captured_bytes": counters["bytes"], "packets": counters["packets"],
              "drops": counters["drops"], "segment_bytes": seg, "export_pcapng_bytes": export_bytes,
              "export_gzip6_bytes": gzip_bytes, "export_zstd3_bytes": zstd_bytes, "export_zstd1_bytes": zstd1_bytes,
              "segment_per_captured_byte": round(seg / counters["bytes"], 4) if counters["bytes"] else None,
              "gzip_per_captured_byte": round(gzip_bytes / counters["bytes"], 4) if counters["bytes"] else None,
              "segment_vs_gzip": round(seg / gzip_bytes, 4) if gzip_bytes else None,
              "seconds": {"export": export_s, "export_gzip": gzip_s, "export_zstd": zstd_s, "export_zstd1": zstd1_s},
              "watcher": busy, "segment_files": len(paths.split())}
    log(f"{name}: captured {counters['bytes']} B -> segments {seg} B, export {export_bytes} B, "
        f"gzip {gzip_bytes} B, zstd {zstd_bytes} B")
    return result, libraries_summary(status)


def main():
    binary, out = binary_from_argv()
    scratch = workdir("footprint")

    # Idle first, before our own lab exists: what a host with nothing for it costs.
    tap = Tlstap(binary, os.path.join(scratch, "seg-idle"), "--interfaces", "bn*")
    ready_s = tap.wait_ready()
    time.sleep(2)
    fds = fd_count(tap.pid)
    sampler = Sampler([tap.pid]).start()
    for _ in range(IDLE_SECONDS * 2):
        time.sleep(0.5)
        sampler.poll()
    idle = sampler.stop()
    idle.update({"ready_s": round(ready_s, 3), "fds": fds, "rss_mb_now": round(rss_bytes(tap.pid) / 2**20, 1),
                 "namespaces_seen": len(tap.status()["namespaces"])})
    tap.stop()
    log(f"idle: {idle}")

    lab = two_namespace_lab("f", 3)
    start_nginx(lab["server_ns"], os.path.join(scratch, "nginx"), lab["server_ip"])
    Proc(["ip", "netns", "exec", lab["server_ns"], "iperf3", "-s", "-p", "5201"],
         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    url = f"https://{lab['server_ip']}/"

    def https():
        wrk(lab["client_ns"], url, 3, 32)

    def iperf():
        sh("ip", "netns", "exec", lab["client_ns"], "iperf3", "-c", lab["server_ip"], "-p", "5201", "-t", "2",
           "-b", "1G", timeout=60)

    compression, libraries = {}, None
    for name, snaplen, load in (("https", 262144, https), ("iperf", 262144, iperf), ("iperf-128", 128, iperf)):
        compression[name], libraries = capture(binary, scratch, lab, name, snaplen, load)
        for path in segments(os.path.join(scratch, f"seg-{name}")):
            os.unlink(path)

    emit({"benchmark": "footprint", "zstd_level": LEVEL, "libraries": libraries, "idle_seconds": IDLE_SECONDS,
          "commands": {"idle": "tlstap run --segment-dir DIR --interfaces 'bn*'  (no traffic)",
                       "capture": f"tlstap run --segment-dir DIR --interfaces {lab['server_if']} --snaplen N "
                                  f"--zstd-level {LEVEL}",
                       "gzip": "tlstap export --segment-dir DIR -o - | gzip -6 | wc -c"},
          "idle": idle, "compression": compression}, out)


if __name__ == "__main__":
    main()
