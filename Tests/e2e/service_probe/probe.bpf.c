// The two kinds of BPF program tlstap uses, reduced to nothing: a tc classifier that passes every
// packet, and a uprobe that counts calls. Loaded by probe.c inside tlstap.service's sandbox.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} hits SEC(".maps");

SEC("tc")
int pass(struct __sk_buff *skb) { return TC_ACT_OK; }

SEC("uprobe")
int count_call(void *ctx)
{
    __u32 key = 0;
    __u64 *value = bpf_map_lookup_elem(&hits, &key);
    if (value)
        __sync_fetch_and_add(value, 1);
    return 0;
}
