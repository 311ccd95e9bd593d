// SPDX-License-Identifier: GPL-2.0
/* tc clsact classifier for every interface: copies up to cfg_snaplen bytes of each packet with its
 * kernel time, namespace and direction into the `events` ring buffer, counts in `drops` what did
 * not fit, and always returns TC_ACT_UNSPEC so the packet goes on exactly as it would without us.
 * Loaded and attached by Sources/Attach/CaptureLoader.swift. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "capture.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 cfg_snaplen = 262144;
/* The namespace this instance is attached in. bpf_get_netns_cookie(skb) cannot tell it: in tc it names
 * the namespace of the packet's socket (a packet crossing a veth still carries its sender's) or the
 * initial namespace when there is none, and tc programs may not call it before kernel 6.15. Reading
 * skb->dev's namespace needs bpf_cast_to_kern_ctx (6.3+). So the loader loads one instance per
 * namespace, sharing the maps, with this set to the namespace's SO_NETNS_COOKIE: it works on
 * bookworm's 6.1 kernel as well. */
const volatile __u64 cfg_netns_cookie = 0;
/* Wake the consumer only once this much data waits in the ring (0: on every record). Waking on every
 * record costs an irq_work and a scheduler wakeup per packet, which at high rates costs more than the
 * capture itself; the consumer polls with a short timeout and picks up what did not wake it. */
const volatile __u32 cfg_wakeup_bytes = 0;

/* One ring per CPU, so CPUs capturing at once never share a ring's lock or producer position (with
 * one shared ring, those cache lines moved between CPUs on every record). The loader sizes the rings,
 * creates one per possible CPU and puts it at that CPU's index; records of one CPU's ring are in
 * time order, and the reorder buffer merges the rings by time. */
struct cpu_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* the loader sets the per-CPU size before load */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* the loader sets: the number of possible CPUs */
	__type(key, __u32);
	__array(values, struct cpu_ring);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct capture_iface);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline __u64 wakeup_flag(void *ring)
{
	if (cfg_wakeup_bytes == 0)
		return 0; /* the kernel's default: wake when the consumer has caught up */
	return bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									       : BPF_RB_NO_WAKEUP;
}

static __always_inline void count_drop(struct __sk_buff *skb, __u64 netns_cookie, __u32 direction)
{
	struct capture_iface key = {
		.netns_cookie = netns_cookie,
		.ifindex = skb->ifindex,
		.direction = direction,
	};
	__u64 one = 1, *count = bpf_map_lookup_elem(&drops, &key);
	if (count)
		*count += 1; /* per-CPU value: no atomics needed */
	else
		bpf_map_update_elem(&drops, &key, &one, BPF_NOEXIST);
}

/* The verifier needs a constant reservation size, so records come in size buckets; the unused tail
 * of a bucket is ring space only, the record says how much of it is packet. The buckets follow common
 * frame sizes (1536 holds a 1514/1518-byte Ethernet frame, 9216 a jumbo frame) so that little ring
 * is wasted on typical traffic; larger GSO/GRO packets take the power-of-two buckets above. */
#define TRY_BUCKET(size)                                                             \
	if (cap_len <= (size)) {                                                       \
		struct capture_event *e = bpf_ringbuf_reserve(ring, sizeof(*e) + (size), 0);   \
		if (!e)                                                                    \
			goto dropped;                                                          \
		e->ts_ns = ts;                                                             \
		e->netns_cookie = netns_cookie;                                            \
		e->ifindex = skb->ifindex;                                                 \
		e->orig_len = skb->len;                                                    \
		e->direction = direction;                                                  \
		__u32 n = cap_len;                                                         \
		if (n > (size))                                                            \
			n = (size);                                                            \
		if (n == 0 || bpf_skb_load_bytes(skb, 0, (void *)(e + 1), n) < 0)          \
			n = 0;                                                                 \
		e->cap_len = n;                                                            \
		bpf_ringbuf_submit(e, wakeup_flag(ring));                                  \
		return TC_ACT_UNSPEC;                                                      \
	}

static __always_inline int capture(struct __sk_buff *skb, __u32 direction)
{
	__u64 ts = bpf_ktime_get_ns();
	__u64 netns_cookie = cfg_netns_cookie;
	__u32 cap_len = skb->len < cfg_snaplen ? skb->len : cfg_snaplen;
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&events, &cpu);
	if (!ring)
		goto dropped;

	TRY_BUCKET(128)
	TRY_BUCKET(256)
	TRY_BUCKET(512)
	TRY_BUCKET(1024)
	TRY_BUCKET(1536)
	TRY_BUCKET(2048)
	TRY_BUCKET(4096)
	TRY_BUCKET(9216)
	TRY_BUCKET(16384)
	TRY_BUCKET(65536)
	TRY_BUCKET(CAPTURE_MAX_SNAPLEN)
dropped:
	count_drop(skb, netns_cookie, direction);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tlstap_ingress(struct __sk_buff *skb)
{
	return capture(skb, CAPTURE_INBOUND);
}

SEC("tc")
int tlstap_egress(struct __sk_buff *skb)
{
	return capture(skb, CAPTURE_OUTBOUND);
}
