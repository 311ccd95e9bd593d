#!/usr/bin/env python3
"""Turns the JSON results of one bench run (a directory) into a dated Markdown section for RESULTS.md:
machine, binary, commands, raw per-run numbers, medians and ratios against the targets.

usage: report.py RESULT_DIR BINARY_PATH"""
import hashlib
import json
import os
import platform
import subprocess
import sys
import time


def load(directory, name):
    path = os.path.join(directory, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(value, digits=2):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def pct(value):
    return "—" if value is None else f"{100 * value:.1f} %"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine(directory):
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    loads = open(os.path.join(directory, "loadavg")).read().strip().replace("\n", "; ") if os.path.exists(
        os.path.join(directory, "loadavg")) else "?"
    return (f"- machine: {os.cpu_count()} CPUs ({cpu}), {mem_kb / 2**20:.1f} GiB RAM, kernel {platform.release()}\n"
            f"- load average (1/5/15 min) before each benchmark: {loads}\n"
            f"  (the machine is shared with other engineers' builds and tests: compare ratios within a run)")


def binary(path):
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    return f"- tlstap: `{path}` version {version}, {os.path.getsize(path) / 2**20:.0f} MiB, sha256 {digest}…"


def https_section(d):
    s = d["summary"]
    rows = [[r["round"], r["mode"], round(r["rps"]), r["p99_ms"], r.get("watcher", {}).get("cpu_share"),
             r.get("watcher", {}).get("rss_mb"),
             r.get("tlstap", {}).get("drops", r.get("tcpdump", {}).get("dropped")) if r["mode"] != "bare" else None,
             r.get("foreign_uprobes")]
            for r in d["runs"]]
    out = [f"### 1. Cost to an HTTPS service ({d['rounds']} rounds × {d['seconds']} s, interleaved)",
           "", "\n".join(f"- {k}: `{v}`" for k, v in d["commands"].items()),
           f"- TLS key capture active: {d['libraries']}", "",
           table(["round", "mode", "req/s", "p99 ms", "watcher CPU (cores)", "watcher RSS MB", "drops",
                  "others' uprobes"], rows), "",
           "(\"others' uprobes\": uprobes held by other processes — other tlstap instances on this shared "
           "machine — during the run; they slow every libssl user, bare runs included.)", "",
           table(["mode", "median req/s", "median p99 ms", "req/s vs bare", "p99 vs bare"],
                 [[m, round(s[m]["rps_median"]), s[m]["p99_ms_median"], s[m].get("rps_vs_bare"),
                   s[m].get("p99_vs_bare")] for m in ("bare", "busy-loop", "tcpdump", "tlstap", "baseline") if m in s]), "",
           f"- tlstap/bare per round: {s['tlstap']['rps_vs_bare_per_round']}; tlstap/tcpdump (medians): "
           f"{fmt(s['tlstap_vs_tcpdump_rps'], 3)}"
           + (f"; tlstap/baseline (medians): {fmt(s['tlstap_vs_baseline_rps'], 3)}" if "baseline" in s else ""),
           f"- **target** (tlstap ≥ 97 % of bare and faster than tcpdump|zstd): "
           f"{'met' if s['target_met'] else 'NOT met'} — tlstap at {pct(s['tlstap']['rps_vs_bare'])} of bare"]
    diag = d.get("diagnostics")
    if diag:
        t, c = diag["tlstap"], diag["tcpdump"]
        out += ["", "Where the cost goes (one extra run of each watcher, not in the medians; BPF run time from "
                "`kernel.bpf_stats_enabled=1`, on only during tlstap's diagnostic run):", "",
                table(["watcher", "req/s", "packets", "watcher CPU s", "CPU µs/packet", "context switches",
                       "switches per 1000 packets", "tc program ns/run", "tc program CPU s", "key uprobes"],
                      [["tcpdump|zstd", round(c["rps"]), c["packets"], c["cpu_s"], c["cpu_us_per_packet"],
                        c["context_switches"], c["context_switches_per_1000_packets"], None, None, None],
                       *[[m, round(t["rps"]), t["packets"], t["cpu_s"], t["cpu_us_per_packet"],
                         t["context_switches"], t["context_switches_per_1000_packets"], t["bpf_ns_per_run"],
                         t["bpf_cpu_s"], (f"{t['uprobe_runs']} runs of {t['uprobe_programs']} programs, "
                                          f"{t['uprobe_runs_per_request']}/request, {t['uprobe_ns_per_run']} ns/run")
                         if "uprobe_runs" in t else None]
                        for m, t in ((m, diag[m]) for m in ("tlstap", "baseline") if m in diag)]])]
    return "\n".join(out)


def storm_section(d):
    s = d["summary"]
    rows = [[r["round"], r["mode"], round(r["rps"]), r["p99_ms"], r["served"], r.get("decrypted_segments"),
             r.get("decrypted_export"), r.get("tls_client_hellos"), r.get("tlstap", {}).get("keys"),
             r.get("tlstap", {}).get("late_keys"), r.get("watcher", {}).get("cpu_share"), r.get("foreign_uprobes")]
            for r in d["runs"]]
    out = [f"### 2. Handshake storm ({d['rounds']} rounds × {d['seconds']} s)", "",
           "\n".join(f"- {k}: `{v}`" for k, v in d["commands"].items()),
           f"- TLS key capture active: {d['libraries']}", "",
           table(["round", "mode", "new conn/s", "p99 ms", "served", "decrypted (segments)", "decrypted (export)",
                  "ClientHellos", "keys", "late keys", "tlstap CPU", "others' uprobes"], rows), "",
           f"- median new connections/s: bare {fmt(s['bare_conn_per_s_median'], 0)}, with tlstap "
           f"{fmt(s['tlstap_conn_per_s_median'], 0)} → **{pct(s['conn_rate_vs_bare'])}** of bare",
           f"- decrypted by tshark: {s['decrypted_total']} of {s['served_total']} requests served → "
           f"**{pct(s['decrypted_share'])}** (target 100 %: {'met' if s['target_met'] else 'NOT met'})"]
    return "\n".join(out)


def packets_seen(r):
    if "tlstap" in r:
        return r["tlstap"]["packets"]
    return r.get("tcpdump", {}).get("received")


def drop_share(r):
    seen = packets_seen(r)
    return None if r.get("drops") is None or not seen else f"{100 * r['drops'] / (seen + r['drops']):.2f} %"


def ceiling_section(d):
    from capture_ceiling import ceiling_summary
    s = d["summary"] = ceiling_summary(d["runs"])  # recomputed: older runs summed the two drop counts
    rows = [[r["rate"], r["mode"], r["gbit_s"], r["link_bytes"] / 1e9, packets_seen(r), r.get("drops"), drop_share(r),
             r.get("watcher", {}).get("cpu_s"), r.get("cpu_s_per_gb"), r.get("watcher", {}).get("rss_mb"),
             r.get("tlstap", {}).get("isb", {}).get("ifdrop"), r.get("retransmits")] for r in d["runs"]]
    modes = ["none", "tlstap", "tlstap-128", "tcpdump", "tcpdump-128"]
    out = [f"### 3. Capture ceiling (iperf3 TCP over veth, {d['seconds']} s per step, rates {', '.join(d['rates'])})",
           "", "\n".join(f"- {k}: `{v}`" for k, v in d["commands"].items()),
           f"- segments written to {d['segment_root']}", "",
           table(["offered", "mode", "achieved Gbit/s", "GB on link", "packets seen", "drops", "drop share", "CPU s", "CPU s/GB", "RSS MB",
                  "ISB ifdrop", "TCP retransmits"], rows), "",
           table(["mode", "highest achieved Gbit/s", "highest zero-drop Gbit/s", "median CPU s per GB", "max RSS MB"],
                 [[m, s[m]["max_gbit_s"], s[m]["max_zero_drop_gbit_s"], s[m].get("cpu_s_per_gb_median"),
                   s[m].get("rss_mb_max")] for m in modes]), "",
           f"- tlstap vs tcpdump|zstd at full snaplen: zero-drop rate ×{fmt(s['tlstap_vs_tcpdump']['zero_drop_rate_ratio'])},"
           f" CPU per GB ×{fmt(s['tlstap_vs_tcpdump']['cpu_per_gb_ratio'])}",
           f"- at snaplen 128: zero-drop rate ×{fmt(s['tlstap_vs_tcpdump-128']['zero_drop_rate_ratio'])},"
           f" CPU per GB ×{fmt(s['tlstap_vs_tcpdump-128']['cpu_per_gb_ratio'])}",
           "- \"CPU s/GB\" divides the watcher's utime+stime (tlstap; or tcpdump + zstd) by the bytes that crossed "
           "the watched interface (rx+tx), so both tools are charged for the same traffic. Packets are "
           "mostly 64 KB GSO/GRO super-packets on veth, so per-packet costs hide behind few packets; "
           "tcpdump runs with its default 2 MiB kernel buffer, tlstap with its default 64 MiB ring."]
    return "\n".join(out)


def footprint_section(d):
    i = d["idle"]
    rows = [[name, c["snaplen"], c["packets"], c["captured_bytes"], c["segment_bytes"], c["export_pcapng_bytes"],
             c["export_gzip6_bytes"], c["export_zstd3_bytes"], c.get("export_zstd1_bytes"), c["segment_per_captured_byte"],
             c["gzip_per_captured_byte"], c["segment_vs_gzip"], c["watcher"]["cpu_share"], c["watcher"]["rss_mb"]]
            for name, c in d["compression"].items()]
    out = [f"### 4. Footprint (zstd level {d['zstd_level']})", "",
           "\n".join(f"- {k}: `{v}`" for k, v in d["commands"].items()), "",
           f"- idle ({d['idle_seconds']} s, {i['namespaces_seen']} namespaces on the host): CPU "
           f"{fmt(i['cpu_s'], 3)} s ({pct(i['cpu_share'])} of a core), RSS {i['rss_mb']} MB, {i['fds']} fds, "
           f"READY after {i['ready_s']} s",
           "- under load: see the watcher CPU/RSS columns of benchmarks 1–3 and below", "",
           table(["capture", "snaplen", "packets", "captured B", "segment B", "export pcapng B", "gzip -6 B",
                  "zstd -3 B", "zstd -1 B", "segment/captured", "gzip/captured", "segment/gzip", "tlstap CPU", "RSS MB"], rows),
           "",
           "- iperf3 sends the same 128 KiB random buffer over and over: zstd's window spans it, gzip's 32 KiB "
           "window does not, so the iperf rows flatter zstd. The https row (TLS records) is the realistic one."]
    return "\n".join(out)


def discovery_section(d):
    s = d["summary"]
    out = [f"### 5. Scale of discovery ({d['namespaces']} namespaces, one veth pair each, both ends up)", "",
           "\n".join(f"- {k}: `{v}`" for k, v in d["commands"].items()), "",
           f"- burst: {d['create_burst_s']} s to create; **all {2 * d['namespaces']} interfaces attached after "
           f"{fmt(s['all_attached_s'])} s** (status.json, ±1 s); tc filter present in sample: "
           f"{d['tc_filter_present_in_sample']}",
           f"- per namespace: **{fmt(s['rss_kb_per_namespace'], 1)} KB RSS**, **{fmt(s['fds_per_namespace'], 1)} fds** "
           f"(RSS {d['memory_before']['rss_kb']} → {d['memory_after']['rss_kb']} KB, anon "
           f"{d['memory_before']['anon_kb']} → {d['memory_after']['anon_kb']} KB, fds {d['memory_before']['fds']} → "
           f"{d['memory_after']['fds']})",
           f"- delete burst {d['delete_burst_s']} s; status empty after {fmt(s['all_detached_s'])} s; afterwards RSS "
           f"{s['rss_mb_after_delete_vs_before']:+} MB and fds {s['fds_after_delete_vs_before']:+} vs before",
           f"- attach trace (s since burst start, interfaces attached): {d['attach_trace']}"]
    if d.get("repeat_cycles"):
        out += [f"- {len(d['repeat_cycles']) + 1} create/delete cycles: RSS after each delete vs before "
                f"{s['rss_mb_after_each_delete_vs_before']} MB, fds {s['fds_after_each_delete_vs_before']}; "
                f"attach times of later cycles {[c['all_attached_s'] for c in d['repeat_cycles']]} s"]
    return "\n".join(out)


def main():
    directory, binary_path = sys.argv[1], sys.argv[2]
    finished = os.path.join(directory, "failures")  # written when the last benchmark ended
    when = os.path.getmtime(finished) if os.path.exists(finished) else time.time()
    parts = [f"## Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))}", "", machine(directory),
             open(os.path.join(directory, "binary")).read().strip() if os.path.exists(os.path.join(directory, "binary"))
             else binary(binary_path), f"- command: `sudo make bench` → `bench/run-all.sh {binary_path}`", ""]
    failures = open(os.path.join(directory, "failures")).read().strip() if os.path.exists(
        os.path.join(directory, "failures")) else ""
    if failures:
        parts += [f"**Benchmarks that failed in this run:** {failures} (logs in the run directory)", ""]
    for name, section in (("https_cost", https_section), ("handshake_storm", storm_section),
                          ("capture_ceiling", ceiling_section), ("footprint", footprint_section),
                          ("discovery_scale", discovery_section)):
        data = load(directory, name)
        if data is None:
            parts += [f"### {name}: no result (failed or skipped)", ""]
            continue
        try:
            parts += [section(data), ""]
        except Exception as error:  # a report bug must not lose the raw numbers
            parts += [f"### {name}: could not format ({error}); raw JSON:", "", "```json",
                      json.dumps(data.get("summary", data), indent=1), "```", ""]
    print("\n".join(parts))


if __name__ == "__main__":
    main()
