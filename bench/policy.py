"""NetworkPolicy enforcement: what 50 policies over 200 pods cost, in one run.

    ./podnet.sh bench policy      (or: python bench/policy.py --seconds 3 --repeat 3)

A world of 200 pods in 10 namespaces with 50 policies of every kind (default deny, namespace
and pod selectors, ipBlocks with exceptions, named ports, port ranges, egress), rendered into
node n1's `table inet podnet`; three of the pods are real (the hand-built network of
tests/kernel/policynet.py: a client and a server on n1, a server on n2), and the policies that
let the client reach them are the last ones. Measured, with and without the table, alternating
so that load elsewhere on the machine falls on both alike:
- rendering time (pure Python) and `nft -f` load time of the table;
- TCP throughput (iperf3, single stream) client -> server through n1 (same node), and client ->
  remote through n1 and n2 (across nodes, host-gw);
- new connections per second (each one's first packet walks the policy chains).
Without policies, the table keeps a lab node's NAT chain (conntrack is on in every lab node);
with them, it adds the policies' sets, maps and chains. Ratios are with / without, the median
of each round's ratio; the target for throughput is at least 0.9.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the repository, for tests.kernel.policynet
import throughput  # noqa: E402
from sandbox import ensure_sandbox, median_time  # noqa: E402
from tests.kernel.policynet import TABLE, HandNet, PodPlace  # noqa: E402

from podnet.kernel import netns, nftables  # noqa: E402
from podnet.model import load_topology  # noqa: E402
from podnet.policy.nft import policy_chains  # noqa: E402
from podnet.policy.world import Host, Member, World  # noqa: E402

PORT = throughput.PORT
# Without policies, a lab node's table still has its Service and egress NAT chains, which turn
# conntrack on: both sides of the comparison keep this one, so the ratio is the policies' own.
LAB_NAT = """chain nat-postrouting {
  type nat hook postrouting priority srcnat; policy accept;
  ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade
}
"""
NAMESPACES = 10
PODS = 200


def topology() -> str:
    """10 namespaces of 20 pods (the real client and server among them in ns0), 50 policies."""
    docs = []
    for n in range(NAMESPACES):
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{n}, labels: "
                    f"{{team: t{n % 4}}}}}\n")
    ports = ("[{containerPort: 8080, name: http}, {containerPort: 9090, name: metrics}, "
             f"{{containerPort: {PORT}, name: iperf}}]")
    for i in range(PODS):
        ns, app, tier = f"ns{i % NAMESPACES}", f"app{i % 7}", ("front", "back")[i % 2]
        role = {0: "client", 10: "server", 20: "remote"}.get(i, "filler")
        docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: pod{i}, namespace: {ns}, "
                    f"labels: {{app: {app}, tier: {tier}, role: {role}}}}}\n"
                    f"spec: {{containers: [{{name: c, ports: {ports}}}]}}\n")
    for n in range(NAMESPACES):
        ns = f"ns{n}"
        docs += [
            _policy("default-deny-ingress", ns, "podSelector: {}\n"),
            _policy("from-teams", ns, f"""\
podSelector: {{matchLabels: {{app: app{n % 7}}}}}
ingress:
- from:
  - namespaceSelector: {{matchExpressions: [{{key: team, operator: In, values: [t1, t2]}}]}}
    podSelector: {{matchLabels: {{tier: front}}}}
  ports: [{{port: http}}, {{port: 9000, endPort: 9100}}]
"""),
            _policy("from-outside", ns, """\
podSelector: {matchLabels: {tier: back}}
ingress:
- from:
  - ipBlock: {cidr: 10.0.0.0/8, except: [10.244.0.0/16, 10.96.0.0/12]}
  - ipBlock: {cidr: 172.16.0.0/12, except: [172.18.0.0/16]}
  ports: [{port: 443}, {protocol: UDP, port: 53}]
"""),
            _policy("egress", ns, f"""\
podSelector: {{matchExpressions: [{{key: app, operator: In, values: [app{n % 7}, app0]}}]}}
policyTypes: [Egress]
egress:
- to: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {{tier: back}}}}}}]
  ports: [{{port: metrics}}]
- to: [{{ipBlock: {{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}}}}]
  ports: [{{port: 80}}, {{port: 443}}]
"""),
        ]
    # The last policies (by name) are those that let the benchmark's client through.
    docs += [
        _policy("zz-iperf-in", "ns0", """\
podSelector: {matchExpressions: [{key: role, operator: In, values: [server, remote]}]}
ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: iperf},
          {port: 80, endPort: 82}]}]
"""),
        _policy("zz-iperf-out", "ns0", f"""\
podSelector: {{matchLabels: {{role: client}}}}
policyTypes: [Egress]
egress:
- to: [{{podSelector: {{matchExpressions: [{{key: role, operator: NotIn,
        values: [client, filler]}}]}}}}]
  ports: [{{port: {PORT}}}, {{port: 80, endPort: 8080}}]
"""),
    ]
    docs += [_policy(f"deny-{k}", "ns5", f"podSelector: {{matchLabels: {{app: app{k}}}}}\n")
             for k in range(8)]
    return "---\n".join(docs)


def _policy(name: str, namespace: str, spec: str) -> str:
    body = "".join(f"  {line}\n" for line in spec.splitlines())
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


def build_world(net: HandNet) -> World:
    """The policy world: the three real pods where the network put them, the others on n1 (so
    that n1's table holds the rules of all but one), at addresses nobody answers."""
    spec = load_topology(topology())
    real = {"ns0/pod0": "bench/client", "ns0/pod10": "bench/server", "ns0/pod20": "bench/remote"}
    members = []
    filler = iter(range(10, 250))
    for pod in spec.pods:
        placed = net.pods.get(real.get(pod.key, ""))
        if placed is not None:
            node, ips = placed.node, tuple(ipaddress.ip_address(a) for a in placed.ips)
        else:
            host = next(filler)
            node, ips = "n1", (ipaddress.ip_address(f"10.244.1.{host}"),
                               ipaddress.ip_address(f"fd00:10:244:1::{host}"))
        members.append(Member(pod.namespace, pod.name, node, ips, pod.labels,
                              tuple(p for c in pod.containers for p in c.named_ports)))
    hosts = (Host("n1", tuple(ipaddress.ip_address(a) for a in ("172.18.0.2", "10.244.1.1"))),
             Host("n2", tuple(ipaddress.ip_address(a) for a in ("172.18.0.3", "10.244.2.1"))))
    assert len(spec.policies) == 50, len(spec.policies)
    return World(tuple(members), hosts, spec.namespaces,
                 tuple(sorted(spec.policies, key=lambda p: p.key)))


def gbits(net: HandNet, client: str, server: str, address: str, seconds: int) -> float:
    """iperf3 client -> server, as bench/throughput.py runs it."""
    return throughput.iperf(net.pods[client].netns, net.pods[server].netns, address,
                            seconds).gbits


def connects_per_second(net: HandNet, client: str, address: str, count: int = 400) -> float:
    """New TCP connections, one after the other, to port 80 (the network's own server)."""
    where = net.pods[client].netns
    start = time.perf_counter()
    for _ in range(count):
        with netns.entered(netns.path_of(where)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.connect((address, 80))
            s.recv(2)
        finally:
            s.close()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="length of each iperf3 run")
    parser.add_argument("--repeat", type=int, default=4, help="rounds with and without")
    args = parser.parse_args()
    ensure_sandbox()
    if not shutil.which("iperf3"):
        sys.exit("iperf3 is not installed (apt-get install iperf3)")
    net = HandNet("ptp", "host-gw", (PodPlace("bench/client", 1, 2),
                                     PodPlace("bench/server", 1, 3),
                                     PodPlace("bench/remote", 2, 2))).build()
    try:
        started = time.perf_counter()
        world = build_world(net)
        setup = time.perf_counter() - started
        bodies = {n: policy_chains(world, n) for n in ("n1", "n2")}
        render = median_time(lambda: [policy_chains(world, n) for n in ("n1", "n2")])
        paths = {n: netns.path_of(ns) for n, ns in net.nodes.items()}

        def load() -> None:
            nftables.run_many([(nftables.Transaction(TABLE, f"policies of {n}").replace(
                LAB_NAT + b), paths[n]) for n, b in bodies.items()])

        def unload() -> None:
            nftables.run_many([(nftables.Transaction(TABLE, f"policies of {n}").replace(
                LAB_NAT), paths[n]) for n in bodies])

        load_time = median_time(load)
        server = net.ip_of("bench/server", 4)
        remote = net.ip_of("bench/remote", 4)
        runs: dict[str, dict[str, list[float]]] = {"with": {}, "without": {}}
        probes: list[tuple[str, Callable[[], float]]] = [
            ("same node, Gbit/s", lambda: gbits(net, "bench/client", "bench/server", server,
                                                args.seconds)),
            ("across nodes, Gbit/s", lambda: gbits(net, "bench/client", "bench/remote", remote,
                                                   args.seconds)),
        ]
        connections = ("new connections/s",
                       lambda: connects_per_second(net, "bench/client", server, 150))
        def settle(step: Callable[[], None]) -> Callable[[], None]:
            """The table swap, then a pause: the kernel frees the replaced table's objects
            after an RCU grace period, work that would land on the first measurement."""
            def run() -> None:
                step()
                time.sleep(0.3)
            return run

        steps = {"with": settle(load), "without": settle(unload)}
        # ABBA: with, without, then without, with: a drift of the machine's load falls on both
        # sides alike, and each round gives a ratio of neighbours. Connections are quick to
        # count: four such pairs per round.
        for round_ in range(args.repeat):
            for state in ("with", "without") if round_ % 2 == 0 else ("without", "with"):
                steps[state]()
                for label, fn in probes:
                    runs[state].setdefault(label, []).append(fn())
        for pair in range(4 * args.repeat):
            for state in ("with", "without") if pair % 2 == 0 else ("without", "with"):
                steps[state]()
                runs[state].setdefault(connections[0], []).append(connections[1]())
        probes.append(connections)
        load()
        blocked = not net.probe("bench/server", net.ip_of("bench/client", 4), 80)
    finally:
        net.close()
    n1 = bodies["n1"]
    print(f"NetworkPolicy: {len(world.policies)} policies over {len(world.pods)} pods "
          f"({len(world.pods_on('n1'))} on n1), {os.cpu_count()} CPUs")
    print(f"  n1's table: {n1.count(chr(10))} lines, {n1.count('chain ')} chains, "
          f"{n1.count('set ')} sets, {n1.count(' accept comment')} rules that allow")
    print(f"  load the topology (YAML, 250 documents) and build the world: {setup * 1e3:.0f} ms")
    print(f"  render both nodes' rules: {render * 1e3:.1f} ms;  nft -f of both tables: "
          f"{load_time * 1e3:.1f} ms")
    print(f"  a pod the policies isolate is unreachable from an unallowed one: {blocked}")
    print(f"  {'median of rounds':<26} {'with':>8} {'without':>8} "
          f"{'ratio':>6}   ratio of each round (with / without)")
    for label, _ in probes:
        with_, without = (statistics.median(runs[s][label]) for s in ("with", "without"))
        each = [a / b for a, b in zip(runs["with"][label], runs["without"][label], strict=True)]
        shown = " ".join(f"{r:.2f}" for r in each[:12]) + (" ..." if len(each) > 12 else "")
        print(f"  {label:<26} {with_:8.1f} {without:8.1f} {statistics.median(each):6.2f}   "
              + shown)
    print(f"  load average while measuring: {os.getloadavg()[0]:.1f} (the machine is shared)")


if __name__ == "__main__":
    main()
