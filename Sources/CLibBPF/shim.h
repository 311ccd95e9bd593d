// The only C that Swift cannot express for libbpf and namespaces: setns/unshare (glibc hides them
// behind _GNU_SOURCE), and LIBBPF_OPTS-style option structs built with their size set.
#ifndef TLSTAP_CLIBBPF_SHIM_H
#define TLSTAP_CLIBBPF_SHIM_H

#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_arp.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <sys/inotify.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000
#endif
static const int tlstap_clone_newnet = CLONE_NEWNET;

extern int setns(int fd, int nstype);
extern int unshare(int flags);

static inline int tlstap_setns(int fd, int nstype) { return setns(fd, nstype); }
static inline int tlstap_unshare(int flags) { return unshare(flags); }

/* The ring record and drop-counter layouts, shared with bpf/capture.bpf.c: one definition. */
#include "../../bpf/capture.h"
#include "../../bpf/dlopen.h"

static inline struct bpf_object_open_opts tlstap_object_open_opts(const char *object_name) {
    struct bpf_object_open_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.sz = sizeof(opts);
    opts.object_name = object_name;
    return opts;
}

static inline struct bpf_tc_hook tlstap_tc_hook(int ifindex, enum bpf_tc_attach_point where) {
    struct bpf_tc_hook hook;
    memset(&hook, 0, sizeof(hook));
    hook.sz = sizeof(hook);
    hook.ifindex = ifindex;
    hook.attach_point = where;
    return hook;
}

static inline struct bpf_tc_opts tlstap_tc_opts(__u32 handle, __u32 priority, int prog_fd) {
    struct bpf_tc_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.sz = sizeof(opts);
    opts.handle = handle;
    opts.priority = priority;
    opts.prog_fd = prog_fd;
    return opts;
}

static inline struct bpf_uprobe_opts tlstap_uprobe_opts(const char *func_name, int retprobe) {
    struct bpf_uprobe_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.sz = sizeof(opts);
    opts.func_name = func_name;
    opts.retprobe = retprobe;
    return opts;
}

static inline int tlstap_errno(void) { return errno; }

#endif
