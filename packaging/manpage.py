#!/usr/bin/env python3
"""Writes tlstap(1) in roff from the argument parser's own description of the tool
(`tlstap --experimental-dump-help`, the JSON swift-argument-parser's generate-manual plugin reads), so the
man page says exactly what `--help` says and needs no Swift toolchain to build.

    packaging/manpage.py BIN VERSION > tlstap.1
"""
import json
import subprocess
import sys

# What the argument parser does not know: where the service keeps its files.
FILES = [
    ("/etc/tlstap/tlstap.toml", "Configuration; every key is also a flag of \\fBtlstap run\\fR, spelled the same."),
    ("/var/lib/tlstap/segments/", "Finished segments, \\fIYYYY-MM-DDTHH-MM-SSZ\\fR.pcapng.zst (UTC start)."),
    ("/run/tlstap/", "Runtime status of the running service, read by \\fBtlstap status\\fR."),
    ("/lib/systemd/system/tlstap.service", "The systemd unit that runs \\fBtlstap run\\fR."),
]
SEE_ALSO = "systemctl(1), journalctl(1), wireshark(1), tshark(1)"


def esc(text: str) -> str:
    """Roff-escapes running text: backslashes, hyphens, and a leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def option_label(arg: dict) -> str:
    names = []
    for name in arg.get("names") or []:
        dash = "--" if name["kind"] == "long" else "-"
        names.append(f"\\fB{esc(dash + name['name'])}\\fR")
    label = ", ".join(names)
    if arg["kind"] == "option":
        label += f" \\fI{esc(arg.get('valueName', 'value'))}\\fR"
    elif arg["kind"] == "positional":
        label = f"\\fI{esc(arg.get('valueName', 'value'))}\\fR"
    return label


def synopsis(path: list, command: dict) -> str:
    parts = [f"\\fB{esc(' '.join(path))}\\fR"]
    for arg in command.get("arguments") or []:
        if not arg.get("shouldDisplay", True) or (arg.get("valueName") in ("help", "version")):
            continue
        item = option_label(arg).split(", ")[-1]
        if arg.get("isRepeating"):
            item += " \\&..."
        parts.append(f"[{item}]" if arg.get("isOptional") else item)
    if command.get("subcommands"):
        parts.append("\\fIsubcommand\\fR")
    return " ".join(parts)


def options(command: dict, top_level: bool = True) -> list:
    out = []
    for arg in command.get("arguments") or []:
        if not arg.get("shouldDisplay", True):
            continue
        if not top_level and arg.get("valueName") in ("help", "version"):
            continue  # said once, for the tool
        out.append(".TP")
        out.append(option_label(arg))
        text = arg.get("abstract", "")
        if arg.get("discussion"):
            text += "\n" + arg["discussion"]
        out.append(esc(text))
    return out


def render(tool: dict, version: str) -> str:
    root = tool["command"]
    name = root["commandName"]
    out = [f'.TH {name.upper()} 1 "" "{esc(name)} {esc(version)}" "User Commands"',
           ".SH NAME", f"{esc(name)} \\- {esc(root.get('abstract', ''))}",
           ".SH SYNOPSIS", synopsis([name], root)]
    if root.get("discussion"):
        out += [".SH DESCRIPTION", esc(root["discussion"])]
    out += [".SH OPTIONS", *options(root)]
    subcommands = [c for c in root.get("subcommands") or [] if c.get("shouldDisplay", True)]
    if subcommands:
        out.append(".SH COMMANDS")
    for sub in subcommands:
        path = [name, sub["commandName"]]
        out += [f'.SS "{esc(" ".join(path))}"', esc(sub.get("abstract", "")), ".PP", synopsis(path, sub)]
        if sub.get("discussion"):
            out += [".PP", esc(sub["discussion"])]
        out += [".RS", *options(sub, top_level=False), ".RE"]
    out.append(".SH FILES")
    for path, text in FILES:
        out += [".TP", f"\\fI{esc(path)}\\fR", text]
    out += [".SH SEE ALSO", SEE_ALSO]
    return "\n".join(out) + "\n"


def main():
    binary, version = sys.argv[1], sys.argv[2]
    dump = subprocess.run([binary, "--experimental-dump-help"], check=True, capture_output=True, text=True).stdout
    sys.stdout.write(render(json.loads(dump), version))


if __name__ == "__main__":
    main()
