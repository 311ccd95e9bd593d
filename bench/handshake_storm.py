#!/usr/bin/env python3
"""Benchmark 2 — handshake storm: new TLS connections per second with and without tlstap, and the share
of those sessions tshark decrypts from the segments tlstap wrote.

nginx (1 worker, no session cache, no tickets: every connection is a full TLS 1.3 handshake) in
bn-s-srv, `wrk -H 'Connection: close'` (one request per connection) in bn-s-cli. Modes bare/tlstap
interleaved for BENCH_ROUNDS rounds of BENCH_SECONDS. For every tlstap run:
  served     = lines nginx wrote to its access log during the run (requests answered)
  decrypted  = sum over finished segments of `tshark -r SEG -Y http.request` frames, and the same
               count over `tlstap export -o FILE` (all segments merged, DSBs first)
Target: decrypted == served (100 %).

usage: handshake_storm.py /abs/path/tlstap [result.json]"""
import os

from benchlib import (foreign_uprobes, Sampler, Tlstap, binary_from_argv, emit, interleaved, libraries_summary, log, median, ratio,
                      sh, start_nginx, status_counters, tshark_count, two_namespace_lab, workdir, wrk, segments,
                      segment_bytes)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_STORM_CONNECTIONS", "16"))


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main():
    binary, out = binary_from_argv()
    scratch = workdir("storm")
    lab = two_namespace_lab("s", 1)
    access_log = os.path.join(scratch, "access.log")
    start_nginx(lab["server_ns"], os.path.join(scratch, "nginx"), lab["server_ip"], access_log=access_log)
    url = f"https://{lab['server_ip']}/"
    load = dict(seconds=SECONDS, connections=CONNECTIONS, headers=["Connection: close"])
    log("warm-up")
    wrk(lab["client_ns"], url, **dict(load, seconds=2))

    runs, libraries = [], None
    for r, modes in interleaved(["bare", "tlstap"], ROUNDS):
        for mode in modes:
            run = {"round": r, "mode": mode}
            watcher = sampler = None
            if mode == "tlstap":
                segdir = os.path.join(scratch, f"seg{r}")
                watcher = Tlstap(binary, segdir, "--interfaces", lab["server_if"])
                run["ready_s"] = round(watcher.wait_ready(), 3)
                sampler = Sampler([watcher.pid]).start()
            run["foreign_uprobes"] = foreign_uprobes(watcher.pid if watcher else None)
            served_before = count_lines(access_log)
            run.update(wrk(lab["client_ns"], url, **load))
            run["served"] = count_lines(access_log) - served_before
            if mode == "tlstap":
                run["watcher"] = sampler.stop()
                status = watcher.fresh_status()
                run["tlstap"] = status_counters(status)
                libraries = libraries_summary(status)
                watcher.stop()
                run["tlstap"]["segment_bytes"] = segment_bytes(segdir)
                run["decrypted_segments"] = sum(tshark_count(p, "http.request") for p in segments(segdir))
                merged = os.path.join(scratch, f"export{r}.pcapng")
                sh(binary, "export", "--segment-dir", segdir, "-o", merged, timeout=300)
                run["decrypted_export"] = tshark_count(merged, "http.request")
                run["tls_client_hellos"] = tshark_count(merged, "tls.handshake.type == 1")
                run["decrypted_share"] = ratio(run["decrypted_segments"], run["served"])
                os.unlink(merged)
                for path in segments(segdir):
                    os.unlink(path)
            log(f"round {r} {mode}: {run['rps']:.0f} conn/s, served {run['served']}"
                + (f", decrypted {run['decrypted_segments']} (export {run['decrypted_export']}),"
                   f" keys {run['tlstap']['keys']}, watcher {run['watcher']}" if mode == "tlstap" else ""))
            runs.append(run)

    bare = [x for x in runs if x["mode"] == "bare"]
    tap = [x for x in runs if x["mode"] == "tlstap"]
    served = sum(x["served"] for x in tap)
    decrypted = sum(x["decrypted_segments"] for x in tap)
    summary = {
        "bare_conn_per_s_median": median([x["rps"] for x in bare]),
        "tlstap_conn_per_s_median": median([x["rps"] for x in tap]),
        "bare_p99_ms_median": median([x["p99_ms"] for x in bare]),
        "tlstap_p99_ms_median": median([x["p99_ms"] for x in tap]),
        "served_total": served,
        "decrypted_total": decrypted,
        "decrypted_export_total": sum(x["decrypted_export"] for x in tap),
        "decrypted_share": ratio(decrypted, served),
        "watcher_cpu_share_median": median([x["watcher"]["cpu_share"] for x in tap]),
        "watcher_rss_mb_max": max(x["watcher"]["rss_mb"] for x in tap),
    }
    summary["conn_rate_vs_bare"] = ratio(summary["tlstap_conn_per_s_median"], summary["bare_conn_per_s_median"])
    summary["target_met"] = decrypted == served
    emit({"benchmark": "handshake_storm", "rounds": ROUNDS, "seconds": SECONDS, "connections": CONNECTIONS,
          "libraries": libraries, "commands": {
              "server": "nginx worker_processes 1, ssl_session_cache off, ssl_session_tickets off, access_log on",
              "load": f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s -H 'Connection: close' {url}",
              "tlstap": f"tlstap run --segment-dir DIR --interfaces {lab['server_if']}",
              "judge": "tshark -r SEGMENT -Y http.request (summed over segments); same on tlstap export"},
          "runs": runs, "summary": summary}, out)


if __name__ == "__main__":
    main()
