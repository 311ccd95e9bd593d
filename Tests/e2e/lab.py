"""A small network made by a test: hosts A and B in their own namespaces, joined by a bridge that
lives in a third namespace, on the benchmark range 198.18.0.0/15 — nothing outside the sandbox."""
import os


def netns_inode(name):
    return os.stat(f"/run/netns/{name}").st_ino


class Lab:
    """Two hosts (A, B) on a bridge that lives in a third namespace, all made by the test."""

    A_IP = "198.18.7.1"
    B_IP = "198.18.7.2"

    def __init__(self, make_netns):
        self.a, self.b, self.switch = make_netns("laba"), make_netns("labb"), make_netns("labs")
        self.switch.exec("ip", "link", "add", "labbr0", "type", "bridge")
        for host, ip in ((self.a, self.A_IP), (self.b, self.B_IP)):
            for ns in (host, self.switch):
                ns.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                ns.exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            peer = f"labp{host.name[-6:]}"
            host.exec("ip", "link", "add", "labeth0", "type", "veth", "peer", "name", peer, "netns", self.switch.name)
            host.exec("ip", "addr", "add", f"{ip}/24", "dev", "labeth0")
            host.exec("ip", "link", "set", "labeth0", "up")
            self.switch.exec("ip", "link", "set", peer, "master", "labbr0")
            self.switch.exec("ip", "link", "set", peer, "up")
        self.switch.exec("ip", "link", "set", "labbr0", "up")

    def interfaces(self):
        """(netns, ifname) for every interface the traffic crosses."""
        ports = [line.split(":")[1].strip().split("@")[0]
                 for line in self.switch.exec("ip", "-o", "link", "show", "master", "labbr0").stdout.splitlines()]
        return [(self.a, "labeth0"), (self.b, "labeth0"), (self.switch, "labbr0")] + [(self.switch, p) for p in ports]
