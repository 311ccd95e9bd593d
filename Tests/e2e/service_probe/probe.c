// Does tlstap.service's sandbox (capabilities, syscall filter, namespaces, file-system protection)
// allow what the capture pipeline does? Each step prints "OK <what>" or "FAIL <what>: <error>";
// exit 0 only if all pass. Run by test_service_hardening.py as the ExecStart of a copy of the unit.
//   probe OBJECT NETNS_PATH LIBSSL HOME_LIBSSL
// HOME_LIBSSL is a copy of libssl in a 0700 directory of another user, as virtualenvs bundle one.
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

static int check(const char *what, int ok, int err)
{
    if (ok)
        printf("OK %s\n", what);
    else
        printf("FAIL %s: %s\n", what, strerror(err));
    failures += !ok;
    fflush(stdout);
    return ok;
}

static void tc_on_lo(struct bpf_program *prog, const char *where)
{
    char what[128];
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = if_nametoindex("lo"), .attach_point = BPF_TC_INGRESS);
    int err = bpf_tc_hook_create(&hook);
    snprintf(what, sizeof what, "create clsact on lo in %s", where);
    check(what, err == 0 || err == -EEXIST, -err);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 1, .prog_fd = bpf_program__fd(prog));
    err = bpf_tc_attach(&hook, &opts);
    snprintf(what, sizeof what, "attach tc ingress on lo in %s", where);
    if (!check(what, err == 0, -err))
        return;
    opts.prog_fd = 0;
    opts.prog_id = 0;
    opts.flags = 0;
    err = bpf_tc_detach(&hook, &opts);
    snprintf(what, sizeof what, "detach tc ingress on lo in %s", where);
    check(what, err == 0, -err);
    hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
    bpf_tc_hook_destroy(&hook);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s OBJECT NETNS_PATH LIBSSL HOME_LIBSSL\n", argv[0]);
        return 2;
    }
    struct bpf_object *object = bpf_object__open_file(argv[1], NULL);
    if (!check("open BPF object", object != NULL, errno))
        return puts("PROBE FAILED"), 1;
    int err = bpf_object__load(object);
    if (!check("load tc and uprobe programs", err == 0, -err))
        return puts("PROBE FAILED"), 1;
    struct bpf_program *tc = bpf_object__find_program_by_name(object, "pass");
    struct bpf_program *uprobe = bpf_object__find_program_by_name(object, "count_call");

    tc_on_lo(tc, "own netns");
    int own = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int other = open(argv[2], O_RDONLY | O_CLOEXEC);
    check("open other netns", other >= 0, errno);
    if (check("setns into other netns", setns(other, CLONE_NEWNET) == 0, errno)) {
        tc_on_lo(tc, "other netns");
        check("setns back", setns(own, CLONE_NEWNET) == 0, errno);
    }

    char buffer[256];
    check("readlink /proc/1/ns/net", readlink("/proc/1/ns/net", buffer, sizeof buffer) > 0, errno);
    FILE *maps = fopen("/proc/1/maps", "r");
    check("read /proc/1/maps", maps != NULL && fgets(buffer, sizeof buffer, maps) != NULL, errno);
    char via_root[512];
    snprintf(via_root, sizeof via_root, "/proc/1/root%s", argv[3]);
    check("open libssl through /proc/1/root", access(via_root, R_OK) == 0, errno);

    LIBBPF_OPTS(bpf_uprobe_opts, entry, .func_name = "SSL_do_handshake");
    struct bpf_link *link = bpf_program__attach_uprobe_opts(uprobe, -1, via_root, 0, &entry);
    check("attach uprobe SSL_do_handshake", link != NULL, errno);
    LIBBPF_OPTS(bpf_uprobe_opts, exit_, .func_name = "SSL_do_handshake", .retprobe = true);
    struct bpf_link *retlink = bpf_program__attach_uprobe_opts(uprobe, -1, argv[3], 0, &exit_);
    check("attach uretprobe SSL_do_handshake", retlink != NULL, errno);

    check("read libssl in another user's home", access(argv[4], R_OK) == 0, errno);
    struct bpf_link *homelink = bpf_program__attach_uprobe_opts(uprobe, -1, argv[4], 0, &entry);
    check("attach uprobe to libssl in another user's home", homelink != NULL, errno);
    bpf_link__destroy(homelink);

    if (link != NULL) {
        // The test runs TLS handshakes outside the unit; wait up to 10 s for one to be seen.
        printf("WAITING for handshakes\n");
        fflush(stdout);
        __u32 key = 0;
        __u64 count = 0;
        for (int i = 0; i < 100 && count == 0; i++) {
            bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(object, "hits")), &key, &count);
            usleep(100000);
        }
        check("uprobe fired on a TLS handshake", count > 0, ETIMEDOUT);
    }
    bpf_link__destroy(link);
    bpf_link__destroy(retlink);
    bpf_object__close(object);
    printf(failures ? "PROBE FAILED\n" : "PROBE PASSED\n");
    return failures ? 1 : 0;
}
