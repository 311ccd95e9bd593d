/* The ABI between bpf/dlopen.bpf.c and Sources/Attach/DlopenLoader.swift: one ring record per return
 * from dlopen(3) in a watched libc. */
#ifndef TLSTAP_DLOPEN_H
#define TLSTAP_DLOPEN_H

#include <linux/types.h>

struct dlopen_event {
	__u32 pid; /* the process (thread group) that just mapped a library */
};

#endif
