"""Reads classic pcap files (µs or ns resolution, either byte order) into (ts_ns, orig_len, data) —
enough to compare what tcpdump saw with what tlstap wrote, packet by packet."""
import struct

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D


def read_pcap(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 24:
        return []
    for endian in ("<", ">"):
        (magic,) = struct.unpack(endian + "I", blob[:4])
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise ValueError(f"{path}: not a pcap file")
    scale = 1000 if magic == MAGIC_US else 1
    packets, offset = [], 24
    while offset + 16 <= len(blob):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", blob[offset:offset + 16])
        offset += 16
        packets.append((sec * 1_000_000_000 + frac * scale, orig, blob[offset:offset + incl]))
        offset += incl
    return packets
