#!/usr/bin/env python3
"""Benchmark 3 — capture ceiling: iperf3 TCP over a veth between two namespaces at stepped rates, each
watched by tlstap or tcpdump|zstd at full snaplen and at 128 bytes (and by nothing, for reference).

For every (rate, mode) a fresh watcher on the server end of the veth (bncs), one iperf3 run of
BENCH_IPERF_SECONDS, then: achieved rate, bytes that crossed the interface (rx+tx), watcher CPU seconds
(utime+stime of tlstap, or of tcpdump plus zstd), and drops — tlstap: status `drops` plus ISB
ifdrop/osdrop of the segments; tcpdump: "packets dropped by kernel". Reported: the highest achieved
rate with zero drops per mode, and CPU seconds per GB of traffic watched.

usage: capture_ceiling.py /abs/path/tlstap [result.json]"""
import json
import os
import time

from benchlib import (Proc, Sampler, TcpdumpZstd, Tlstap, binary_from_argv, emit, isb_drops, libraries_summary,
                      link_bytes, log, median, sh, status_counters, two_namespace_lab, workdir, segments,
                      segment_bytes)

RATES = os.environ.get("BENCH_RATES", "500M,1G,2G,4G,6G,8G,max").split(",")
SECONDS = int(os.environ.get("BENCH_IPERF_SECONDS", "3"))
MODES = ["none", "tlstap", "tlstap-128", "tcpdump", "tcpdump-128"]


def iperf(lab, rate):
    args = ["ip", "netns", "exec", lab["client_ns"], "iperf3", "-c", lab["server_ip"], "-p", "5201",
            "-t", str(SECONDS), "-J"]
    if rate != "max":
        args += ["-b", rate]
    result = json.loads(sh(*args, timeout=SECONDS + 30))
    end = result["end"]
    return {"gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
            "payload_bytes": end["sum_received"]["bytes"],
            "retransmits": end["sum_sent"].get("retransmits")}


def tlstap_drops(run):
    """Packets tlstap lost: the status counter and the segments' ISBs count the same drops (ring full =
    ifdrop, not written = osdrop), so the larger of the two, not their sum."""
    isb = run["tlstap"]["isb"]
    return max(run["tlstap"]["drops"], isb["ifdrop"] + isb["osdrop"])


def ceiling_summary(runs):
    summary = {}
    for mode in MODES:
        mine = [x for x in runs if x["mode"] == mode]
        if mode.startswith("tlstap"):
            for x in mine:
                x["drops"] = tlstap_drops(x)
        clean = [x for x in mine if mode == "none" or x.get("drops") == 0]
        summary[mode] = {
            "max_gbit_s": max(x["gbit_s"] for x in mine),
            "max_zero_drop_gbit_s": max((x["gbit_s"] for x in clean), default=0.0),
        }
        if mode != "none":
            summary[mode]["cpu_s_per_gb_median"] = median([x["cpu_s_per_gb"] for x in mine])
            summary[mode]["rss_mb_max"] = max(x["watcher"]["rss_mb"] for x in mine)
            summary[mode]["drops_by_rate"] = {x["rate"]: x["drops"] for x in mine}
    for snap in ("", "-128"):
        a, b = summary["tlstap" + snap], summary["tcpdump" + snap]
        summary["tlstap_vs_tcpdump" + snap] = {
            "zero_drop_rate_ratio": round(a["max_zero_drop_gbit_s"] / b["max_zero_drop_gbit_s"], 3)
            if b["max_zero_drop_gbit_s"] else None,
            "cpu_per_gb_ratio": round(a["cpu_s_per_gb_median"] / b["cpu_s_per_gb_median"], 3)
            if b["cpu_s_per_gb_median"] else None}
    return summary


def main():
    binary, out = binary_from_argv()
    scratch = workdir("ceiling")
    segment_root = os.environ.get("BENCH_SEGMENT_DIR", scratch)
    lab = two_namespace_lab("c", 2)
    Proc(["ip", "netns", "exec", lab["server_ns"], "iperf3", "-s", "-p", "5201"],
         stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
    time.sleep(0.5)
    iperf(lab, "max")  # warm-up

    runs, libraries = [], None
    for index, rate in enumerate(RATES):
        for mode in (MODES if index % 2 == 0 else list(reversed(MODES))):
            snaplen = 128 if mode.endswith("-128") else 262144
            run = {"rate": rate, "mode": mode, "snaplen": snaplen}
            watcher = None
            if mode.startswith("tcpdump"):
                watcher = TcpdumpZstd(lab["server_ns"], lab["server_if"], os.path.join(scratch, "td.pcap.zst"),
                                      snaplen=snaplen)
                pids = watcher.pids
            elif mode.startswith("tlstap"):
                segdir = os.path.join(segment_root, f"bn-seg-{mode}-{rate}")
                watcher = Tlstap(binary, segdir, "--interfaces", lab["server_if"], "--snaplen", str(snaplen))
                watcher.wait_ready()
                pids = [watcher.pid]
            bytes_before = link_bytes(lab["server_ns"], lab["server_if"])
            sampler = Sampler(pids).start() if watcher else None
            run.update(iperf(lab, rate))
            run["link_bytes"] = link_bytes(lab["server_ns"], lab["server_if"]) - bytes_before
            if mode.startswith("tcpdump"):
                # tcpdump|zstd may still be draining the kernel buffer: its CPU until exit counts.
                sampler.poll()
                counters = watcher.stop()
                run["watcher"] = sampler.stop(final_cpu=counters["cpu_total_s"])
                run["drops"] = counters["dropped"]
                run["tcpdump"] = counters
                os.unlink(watcher.out_path)
            elif mode.startswith("tlstap"):
                time.sleep(1.0)  # the reorder window and the status refresh
                status = watcher.fresh_status()
                run["watcher"] = sampler.stop()
                run["tlstap"] = status_counters(status)
                libraries = libraries_summary(status)
                watcher.stop()
                run["tlstap"]["segment_bytes"] = segment_bytes(segdir)
                run["tlstap"]["isb"] = isb_drops(segments(segdir))
                run["drops"] = tlstap_drops(run)
                for path in os.listdir(segdir):
                    os.unlink(os.path.join(segdir, path))
                os.rmdir(segdir)
            if watcher:
                run["cpu_s_per_gb"] = round(run["watcher"]["cpu_s"] / (run["link_bytes"] / 1e9), 3)
            log(f"{rate:>4} {mode:<11} {run['gbit_s']:6.2f} Gbit/s drops {run.get('drops', '-')}"
                f" cpu {run.get('watcher', {}).get('cpu_s', '-')} s ({run.get('cpu_s_per_gb', '-')} s/GB)")
            runs.append(run)

    summary = ceiling_summary(runs)
    emit({"benchmark": "capture_ceiling", "rates": RATES, "seconds": SECONDS, "libraries": libraries,
          "segment_root": segment_root, "commands": {
              "load": f"iperf3 -c {lab['server_ip']} -t {SECONDS} [-b RATE] -J (server in {lab['server_ns']})",
              "tlstap": f"tlstap run --segment-dir DIR --interfaces {lab['server_if']} --snaplen 262144|128",
              "tcpdump": f"tcpdump -n -i {lab['server_if']} -s 262144|128 -w - | zstd -3 -q -c > file"},
          "runs": runs, "summary": summary}, out)


if __name__ == "__main__":
    main()
