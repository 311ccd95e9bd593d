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


def pcapng_blocks(blob):
    """Yields (block type, body bytes) of a little-endian pcapng stream (what tlstap writes here)."""
    offset = 0
    while offset + 12 <= len(blob):
        block_type, length = struct.unpack("<II", blob[offset:offset + 8])
        if length < 12 or offset + length > len(blob):
            raise ValueError(f"bad block length {length} at offset {offset}")
        yield block_type, blob[offset + 8:offset + length - 4]
        offset += length


def pcapng_options(body, start):
    """Options of a block body from `start`: {code: [bytes, …]}."""
    options, offset = {}, start
    while offset + 4 <= len(body):
        code, length = struct.unpack("<HH", body[offset:offset + 4])
        if code == 0:
            break
        options.setdefault(code, []).append(body[offset + 4:offset + 4 + length])
        offset += 4 + ((length + 3) & ~3)
    return options


def interface_statistics(blob):
    """ISB counters per interface id: {id: {'ifrecv': n, 'ifdrop': n, 'osdrop': n}} (last ISB wins)."""
    stats = {}
    for block_type, body in pcapng_blocks(blob):
        if block_type != 5:
            continue
        (interface_id,) = struct.unpack("<I", body[:4])
        options = pcapng_options(body, 12)
        counter = lambda code: struct.unpack("<Q", options[code][0])[0] if code in options else None
        stats[interface_id] = {"ifrecv": counter(4), "ifdrop": counter(5), "osdrop": counter(7)}
    return stats


def head_key_log(blob):
    """The key-log lines of the DSBs that come before the first packet of a pcapng stream."""
    lines = []
    for block_type, body in pcapng_blocks(blob):
        if block_type == 6:  # EPB: the head is over
            break
        if block_type == 0x0A:
            secrets_type, length = struct.unpack("<II", body[:8])
            if secrets_type == 0x544C534B:
                lines += body[8:8 + length].decode().splitlines()
    return [line for line in lines if line.strip()]
