// SPDX-License-Identifier: GPL-2.0
/* tc clsact classifier for every interface: copies up to cfg_snaplen bytes of each packet with its
 * kernel time, namespace and direction into the `events` ring buffer, counts in `drops` what did
 * not fit, and always returns TC_ACT_UNSPEC so the packet goes on exactly as it would without us.
 * Loaded and attached by Sources/Attach/CaptureLoader.swift. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "capture.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 cfg_snaplen = 262144;
/* Wake the consumer only once this much data waits in the ring (0: on every record). Waking on every
 * record costs an irq_work and a scheduler wakeup per packet, which at high rates costs more than the
 * capture itself; the consumer polls with a short timeout and picks up what did not wake it. */
const volatile __u32 cfg_wakeup_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20); /* the loader resizes this before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct capture_iface);
	__type(value, __u64);
} drops SEC(".maps");

/* The namespace of the interface the packet is on. bpf_get_netns_cookie(skb) will not do: in tc it
 * answers with the namespace of the packet's socket (a packet crossing a veth still carries its
 * sender's) or with the initial namespace when there is none. So the cookie is read from the device,
 * skb->dev->nd_net.net->net_cookie, with CO-RE: these minimal declarations are relocated by libbpf
 * against the running kernel's BTF. */
struct net___tlstap {
	__u64 net_cookie;
} __attribute__((preserve_access_index));

struct net_device___tlstap {
	struct {
		struct net___tlstap *net;
	} nd_net;
} __attribute__((preserve_access_index));

struct sk_buff___tlstap {
	struct net_device___tlstap *dev;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline __u64 device_netns_cookie(struct __sk_buff *skb)
{
	struct sk_buff___tlstap *kskb = bpf_cast_to_kern_ctx(skb);
	return BPF_CORE_READ(kskb, dev, nd_net.net, net_cookie);
}

static __always_inline __u64 wakeup_flag(void)
{
	if (cfg_wakeup_bytes == 0)
		return 0; /* the kernel's default: wake when the consumer has caught up */
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
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
		struct capture_event *e = bpf_ringbuf_reserve(&events, sizeof(*e) + (size), 0); \
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
		bpf_ringbuf_submit(e, wakeup_flag());                                      \
		return TC_ACT_UNSPEC;                                                      \
	}

static __always_inline int capture(struct __sk_buff *skb, __u32 direction)
{
	__u64 ts = bpf_ktime_get_ns();
	__u64 netns_cookie = device_netns_cookie(skb);
	__u32 cap_len = skb->len < cfg_snaplen ? skb->len : cfg_snaplen;

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
