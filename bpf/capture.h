/* The ABI between bpf/capture.bpf.c and Sources/Attach/CaptureLoader.swift (pinned by a size test).
 * One ring record per packet: this header, then cap_len bytes of the packet from its first byte
 * (the Ethernet header on Ethernet-like devices, the IP header on raw-IP ones). */
#ifndef TLSTAP_CAPTURE_H
#define TLSTAP_CAPTURE_H

#include <linux/types.h>

/* The largest snaplen the program can honour: its biggest ring reservation. The loader clamps to it. */
#define CAPTURE_MAX_SNAPLEN 262144

enum capture_direction {
	CAPTURE_INBOUND = 1,  /* clsact ingress: the packet arrived on the interface */
	CAPTURE_OUTBOUND = 2, /* clsact egress: the packet leaves through the interface */
};

struct capture_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 netns_cookie; /* of the device's namespace; user space reads it as SO_NETNS_COOKIE */
	__u32 ifindex;      /* skb->ifindex, inside that namespace */
	__u32 orig_len;     /* skb->len: bytes on the wire (a GSO packet counts whole) */
	__u32 cap_len;      /* bytes of data that follow, min(orig_len, cfg_snaplen) */
	__u32 direction;    /* enum capture_direction */
};

/* Key of the per-interface drop counter (ring buffer full). */
struct capture_iface {
	__u64 netns_cookie;
	__u32 ifindex;
	__u32 direction;
};

#endif
