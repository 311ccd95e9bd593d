"""`tlstap check` on the real kernel: every required check passes here (kernel 6.18, root), the report is
one plain line per check, and it leaves nothing behind (its scratch namespace and clsact qdisc go away)."""
from conftest import run


def test_check_passes_and_reports_each_capability(tlstap):
    namespaces_before = run(["ip", "netns", "list"]).stdout
    result = run([tlstap, "check"], check=False)
    assert result.returncode == 0, f"tlstap check failed:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    by_name = {}
    for line in lines:
        mark, _, rest = line.partition("  ")
        name, _, detail = rest.partition(": ")
        by_name[name.strip()] = (mark.strip(), detail)
    for required in ["BPF", "BTF", "tc clsact", "ring buffer", "uprobes", "netns"]:
        assert by_name.get(required, ("missing",))[0] == "ok", f"{required} not ok:\n{result.stdout}"
    assert by_name["kernel"][1].startswith("Linux ")
    assert "libssl" in by_name and "libssl.so" in by_name["libssl"][1]
    assert lines[-1] == "tlstap can run on this host."
    assert "libbpf" not in result.stdout + result.stderr, "libbpf's own messages leak into the report"
    assert run(["ip", "netns", "list"]).stdout == namespaces_before


def test_check_fails_with_exit_1_when_bpf_is_not_allowed(tlstap):
    # Without CAP_BPF/CAP_SYS_ADMIN/CAP_NET_ADMIN the BPF and clsact checks must fail, and say so.
    result = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                  "--inh-caps=-all", "--bounding-set=-all", tlstap, "check"], check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(line.startswith("FAIL  BPF:") for line in result.stdout.splitlines()), result.stdout
    assert result.stdout.splitlines()[-1].startswith("tlstap cannot run on this host")
