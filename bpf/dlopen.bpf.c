// SPDX-License-Identifier: GPL-2.0
/* A uretprobe on libc's dlopen(3): when it returns, the library is mapped, so user space looks at that
 * process's maps at once for a libssl it has not seen (a Python wheel's bundled OpenSSL imported late,
 * for example). dlopen is rare, so the probe costs nothing measurable. Records go to the `loads` ring.
 * Loaded and attached by Sources/Attach/DlopenLoader.swift. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "dlopen.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 10);
} loads SEC(".maps");

SEC("uretprobe")
int tlstap_dlopen_return(void *ctx)
{
	struct dlopen_event *e = bpf_ringbuf_reserve(&loads, sizeof(*e), 0);
	if (!e)
		return 0; /* a burst of dlopens: the periodic rescan catches up */
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
