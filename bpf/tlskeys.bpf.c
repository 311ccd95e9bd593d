/* Entry uprobes on OpenSSL's internal key-log path, which OpenSSL 1.1.1 and 3.x call once per derived
 * TLS secret whether or not the application set a keylog callback. One ring record per secret; the
 * hooks fire a few times per handshake and never on SSL_read/SSL_write. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tlskeys.h"

/* This libbpf's bpf_tracing.h stops at PT_REGS_PARM5; the sixth integer argument register per ABI. */
#if defined(__TARGET_ARCH_x86)
#define TLSKEYS_PARM6(x) ((x)->r9)
#elif defined(__TARGET_ARCH_arm64)
#define TLSKEYS_PARM6(x) (((const struct user_pt_regs *)(x))->regs[5])
#else
#error "tlskeys: unsupported architecture"
#endif

char LICENSE[] SEC("license") = "GPL";

/* Puts struct tlskeys_event into the object's BTF (a ring buffer map carries no value type), so a
 * test can pin the Swift decoder's layout against what clang actually laid out. */
const struct tlskeys_event *tlskeys_event_abi __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* 4 MiB: ~27k records, a burst of thousands of handshakes */
} events SEC(".maps");

/* Records lost because the ring was full: one slot, read by the loader for `status`. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline int emit(__u32 hook, const void *label, const void *random, __u64 random_len,
				const void *secret, __u64 secret_len)
{
	/* The "RSA" line logs an encrypted premaster, not a client random: not a session secret. */
	if (random_len != TLSKEYS_RANDOM_LEN || secret_len == 0)
		return 0;

	struct tlskeys_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&drops, &zero);
		if (count)
			__sync_fetch_and_add(count, 1);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->hook = hook;
	e->read_errors = 0;
	if (secret_len > TLSKEYS_SECRET_MAX)
		secret_len = TLSKEYS_SECRET_MAX;
	e->secret_len = secret_len;
	if (bpf_probe_read_user_str(e->label, sizeof(e->label), label) <= 0)
		e->read_errors |= 1;
	if (bpf_probe_read_user(e->client_random, sizeof(e->client_random), random))
		e->read_errors |= 2;
	__builtin_memset(e->secret, 0, sizeof(e->secret));
	if (bpf_probe_read_user(e->secret, secret_len, secret))
		e->read_errors |= 4;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Six arguments: more than this libbpf's BPF_KPROBE unpacks, so the registers are read directly. */
SEC("uprobe")
int tlskeys_nss_keylog(struct pt_regs *ctx)
{
	return emit(TLSKEYS_HOOK_NSS_KEYLOG, (const void *)PT_REGS_PARM1(ctx), (const void *)PT_REGS_PARM3(ctx),
		    PT_REGS_PARM4(ctx), (const void *)PT_REGS_PARM5(ctx), TLSKEYS_PARM6(ctx));
}

SEC("uprobe")
int BPF_KPROBE(tlskeys_log_secret, void *ssl, const char *label, const __u8 *secret, __u64 secret_len)
{
	/* The attach cookie locates s3.client_random in this build's SSL object: the low 32 bits are its
	 * offset; the high 32 bits are 0 when s3 is embedded in SSL (3.x), else 1 + the offset of the
	 * SSL's pointer to its s3 struct (1.1.1). */
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 random_offset = cookie & 0xffffffff;
	__u32 s3_pointer = cookie >> 32;
	const __u8 *base = ssl;
	if (s3_pointer) {
		const __u8 *s3 = 0;
		if (bpf_probe_read_user(&s3, sizeof(s3), (const __u8 *)ssl + (s3_pointer - 1)) || !s3)
			return 0;
		base = s3;
	}
	return emit(TLSKEYS_HOOK_LOG_SECRET, label, base + random_offset, TLSKEYS_RANDOM_LEN, secret, secret_len);
}
