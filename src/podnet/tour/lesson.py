"""The veth-pairs lesson as data: each step is a command to run on the live lab, what its output
must show for the lesson to hold, a short explanation and a small diagram.

Placeholders in braces come from the running lab (see `podnet.tour.runner.lab_facts`):
{worker} is the node of {pod} (the jumpbox when there is one), {other} a pod on another node,
{orange} and {green} two namespaces the tour makes and removes. In `expect`, a placeholder
matches its value literally, and a list-valued one ({worker_pod_netns}) repeats the line for
each value. A command line whose first word is `podnet` or `python3` runs this podnet.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LESSON", "TourStep"]


@dataclass(frozen=True)
class TourStep:
    section: str
    title: str
    run: tuple[str, ...]  # command lines, run in order; `a | b` is a pipe between two processes
    expect: tuple[str, ...] = ()  # regular expressions the output must match
    expect_not: tuple[str, ...] = ()
    explain: str = ""
    diagram: str = ""
    when: str | None = None  # "ptp" or "bridge": only on labs with that pod attachment
    needs: tuple[str, ...] = ()  # facts the step needs ("other"); skipped without them
    background: bool = False  # start the command and leave it running until stop_background
    stop_background: bool = False  # stop (by PID) what background steps started, first
    retry: float = 0.0  # seconds to retry until the output matches (a server starting)
    cleanup: bool = False  # also run when the tour stops early
    show_lines: int = 0  # show only the first N lines of the output (0: all)
    fails: bool = False  # the lesson is that the command fails (a connection policies deny)


LOOPBACK = "1. Talk within your pod: the loopback interface"
PIPE = "2. Talk to another process: through a pipe"
VETHS = "3. Look at existing veth pairs"
BUILD = "4. Build a veth pair by hand"
ADDRESS = "5. Talk within and between pods: by pod address"
DNS = "6. Is it DNS? Names through the cluster DNS"
POLICY = "7. Who may talk: a NetworkPolicy"

_DENY = ('{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": '
         '{"name": "tour-deny-ingress", "namespace": "{pod_ns}"}, "spec": {"podSelector": {}, '
         '"policyTypes": ["Ingress"]}}')
_ALLOW = ('{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": '
          '{"name": "tour-allow-{other_ns}", "namespace": "{pod_ns}"}, "spec": {"podSelector": '
          '{}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": '
          '{"kubernetes.io/metadata.name": "{other_ns}"}}}]}]}}')

# An address of an interface in `ip address`'s output, either family: the interface's line
# ("3: veth1@if2: <...>"), its indented lines, then "inet 10.244.1.1/32 scope global" or
# "inet6 fd00:10:244:1::1/128 scope global" (a broadcast may come between; an IPv6 line does
# not end with the device's name).
_ADDRESS_OF = r"^\d+: {dev}: .*\n(?:\s.*\n)*?\s+{{inet}} {addr} (?:brd \S+ )?scope global"

LESSON: tuple[TourStep, ...] = (
    TourStep(
        LOOPBACK, "Reach into a node and show its loopback interface `lo`.",
        ("podnet node-exec {worker} -- ip link show lo",),
        expect=(r"\d+: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536", r"link/loopback 00:00:00:00:00:00"),
        explain="Every network namespace has its own `lo`; a node is a namespace here (on kind, "
                "a Docker container), so `podnet node-exec` plays `docker exec kind-worker`. "
                "`lo` needs no driver and no cable: what is sent on it comes straight back.",
        diagram="""
  node {worker}
   └── lo   UP   mtu 65536   (sent on it, received on it)""",
    ),
    TourStep(
        LOOPBACK, "Get the IP addresses of that `lo` interface.",
        ("podnet node-exec {worker} -- ip address show lo",),
        expect=(r"inet 127\.0\.0\.1/8 scope host lo",),
        explain="127.0.0.1/8 (and ::1 for IPv6) on `lo`, scope host: these addresses never "
                "leave the namespace that owns them.",
    ),
    TourStep(
        LOOPBACK, "Look up `localhost` in the node's hosts database.",
        ("podnet node-exec {worker} -- getent hosts localhost",),
        expect=(r"(127\.0\.0\.1|::1)\s+localhost",),
        explain="The name `localhost` is an entry in /etc/hosts, not magic: it maps to the "
                "loopback addresses.",
    ),
    TourStep(
        LOOPBACK, "Look at the node's whole /etc/hosts.",
        ("podnet node-exec {worker} -- cat /etc/hosts",),
        expect=(r"127\.0\.0\.1\s+localhost", r"{worker_ip}\s+{worker}"),
        explain="Like Docker on a kind node, the lab wrote the node's own address and name "
                "below the localhost entries.",
    ),
    TourStep(
        LOOPBACK, "Inside the pod: its own loopback, in its own network namespace.",
        ("podnet exec -n {pod_ns} {pod_name} -- ip address show lo",),
        expect=(r"inet 127\.0\.0\.1/8 scope host lo",),
        explain="The pod has a `lo` of its own: the node's `lo` and the pod's `lo` are two "
                "interfaces in two namespaces, with the same address.",
        diagram="""
  node {worker}          └── lo 127.0.0.1/8
  pod {pod_key}   └── lo 127.0.0.1/8   (another namespace, another lo)""",
    ),
    TourStep(
        LOOPBACK, "Test the web container from inside its pod over `localhost`.",
        ("podnet exec -n {pod_ns} {pod_name} -- curl -s http://localhost:{port}",),
        expect=(r"Pod {pod_key} answered",),
        explain="curl and the web server run in the same pod (here in the same container, but "
                "every container of a pod shares its network namespace): curl's connection "
                "goes out on `lo` and comes back in on `lo`. The port number tells the "
                "processes apart.",
        diagram="""
  pod {pod_key}
   curl :49152 ──1──▶ lo ──2──▶ server :{port}
   curl :49152 ◀──4── lo ◀──3── server :{port}""",
        show_lines=12,
    ),
    TourStep(
        PIPE, "Pipe the output of a process in one pod into a process in another.",
        ("podnet exec -n {pod_ns} {pod_name} -- hostname"
         " | podnet exec -n {other_ns} {other_name} -- sed s/^/read-from-the-pipe:/",),
        expect=(r"read-from-the-pipe:{pod_name}",),
        needs=("other",),
        explain="The shell (here, the tour) made one pipe and started two processes: `hostname` "
                "in {pod_key} writes into it, `sed` in {other_key} reads from it. A pipe is "
                "one-way and joins exactly two processes; no network is involved, so it does "
                "not matter that the two pods are in different network namespaces.",
        diagram="""
  tour (the shell)
   ├── hostname (pod {pod_name}) ──writes──▶ [ pipe ] ──reads──▶ sed (pod {other_name})
   └── (started both, made the pipe)""",
    ),
    TourStep(
        VETHS, "List the network namespaces on the node.",
        ("podnet node-exec {worker} -- ip netns list",),
        expect=(r"{worker_pod_netns}",),
        explain="One namespace per pod, named as container runtimes name them (cni-<uuid>). "
                "`node-exec` shows the node's own pods, as `ip netns list` on a kind node does.",
    ),
    TourStep(
        VETHS, "Show the network interfaces on that node.",
        ("podnet node-exec {worker} -- ip link",),
        expect=(r"{pod_veth}@if\d+: <BROADCAST,MULTICAST,UP,LOWER_UP>",
                r"link-netns {pod_netns}", r"eth0@if\d+:"),
        explain="Each pod has one veth pair: this end, {pod_veth}, lives on the node; `@ifN` is "
                "the index of its peer, and `link-netns` names the namespace the peer is in: "
                "the pod's. The node's own eth0 is a veth too, to the node network.",
        diagram="""
  node {worker}                  pod {pod_key}
   {pod_veth} ══════ veth pair ══════ eth0 {pod_ip}""",
        show_lines=24,
    ),
    TourStep(
        VETHS, "Display the {family} addresses of the node's interfaces (kindnet's "
               "/{host_prefix} gateway).",
        ("podnet node-exec {worker} -- ip address",),
        expect=(_ADDRESS_OF.format(dev="{pod_veth}@if\\d+", addr="{gateway}/{host_prefix}"),
                _ADDRESS_OF.format(dev="eth0@if\\d+", addr="{worker_ip}/\\d+")),
        when="ptp",
        explain="Every pod veth on the node carries the same address, {gateway}/{host_prefix}: "
                "the gateway the pods use. With a /{host_prefix} and a host route per pod, the "
                "node routes "
                "to each pod by its veth (kindnet's layout).",
        show_lines=30,
    ),
    TourStep(
        VETHS, "Display the node's bridge and its ports (the docker0/cni0 layout).",
        ("podnet node-exec {worker} -- ip address show cni0",
         "podnet node-exec {worker} -- ip link show master cni0"),
        expect=(_ADDRESS_OF.format(dev="cni0", addr="{gateway}/\\d+"),
                r"{pod_veth}@if\d+: .* master cni0"),
        when="bridge",
        explain="Here the pods' gateway {gateway} sits on a bridge, cni0, and each pod's node-side "
                "veth is a port of it: pods on one node talk through the bridge like machines "
                "on one switch.",
    ),
    TourStep(
        VETHS, "Ask which pod is behind the node's veth.",
        ("podnet inspect --interface {pod_veth}",),
        expect=(r"{pod_veth} in {worker}.*peer is eth0 in {pod_netns}", r"pod {pod_key}"),
        explain="`podnet inspect` joins both ends of every veth pair across namespaces and "
                "names the processes and the pod behind the far end.",
    ),
    TourStep(
        BUILD, "Make two namespaces and a veth pair between them, as the lesson's `ip link add`.",
        ("ip netns add {orange}",
         "ip netns add {green}",
         "ip -n {orange} link add tap1 type veth peer name tap2 netns {green}",
         "ip -n {orange} link show tap1"),
        expect=(r"tap1@if\d+: <BROADCAST,MULTICAST(,M-DOWN)?> .* state DOWN",
                r"link-netns {green}"),
        explain="`peer name tap2 netns {green}` creates the peer directly in the other namespace "
                "(moving it afterwards with `ip link set tap2 netns` works too, and costs more). "
                "Both ends are down and have no address yet.",
        diagram="""
  {orange}                   {green}
   tap1 DOWN ══════ veth pair ══════ tap2 DOWN""",
    ),
    TourStep(
        BUILD, "Give each end an address and bring them up.",
        ("ip -n {orange} link set lo up",
         "ip -n {orange} addr add 192.168.77.1/24 dev tap1",
         "ip -n {orange} link set tap1 up",
         "ip -n {green} link set lo up",
         "ip -n {green} addr add 192.168.77.2/24 dev tap2",
         "ip -n {green} link set tap2 up",
         "ip -n {green} address show tap2"),
        expect=(r"tap2@if\d+: <BROADCAST,MULTICAST,UP,LOWER_UP>", r"inet 192\.168\.77\.2/24"),
        explain="A veth is up only when both of its ends are (LOWER_UP means the other end is "
                "up too). With 192.168.77.0/24 on both ends, each namespace has a route to the "
                "other.",
    ),
    TourStep(
        BUILD, "Start a web server in the green namespace.",
        ("ip netns exec {green} python3 -m podnet.runtime.responder --port 8080"
         " --pod tour/{green} --ip 192.168.77.2 --container web",),
        background=True,
        explain="A process started inside {green} (by `ip netns exec`) sees only {green}'s "
                "interfaces: lo and tap2. It runs until the tour stops it.",
    ),
    TourStep(
        BUILD, "From orange, talk to green across the pair.",
        ("ip netns exec {orange} curl -s --max-time 2 http://192.168.77.2:8080",),
        expect=(r"Pod tour/{green} answered", r"client: (<b>)?192\.168\.77\.1"),
        retry=5.0,
        explain="curl in {orange} sends from tap1 (192.168.77.1); the frame comes out of tap2 in "
                "{green}, where the server answers. This is all a pod's network is: a namespace, "
                "a veth pair, addresses and routes.",
        diagram="""
  {orange}                                {green}
   curl ──▶ tap1 192.168.77.1 ══ veth ══ tap2 192.168.77.2 ──▶ server :8080""",
        show_lines=12,
    ),
    TourStep(
        BUILD, "Stop the server and delete the green namespace.",
        ("ip netns del {green}", "ip netns list"),
        expect_not=(r"^{green}\b",),
        stop_background=True,
        cleanup=True,
        explain="The server had to stop first: a process inside a namespace keeps it alive "
                "after its name is gone.",
    ),
    TourStep(
        BUILD, "Look at orange's interfaces: tap1 went away with tap2.",
        ("ip -n {orange} link show",),
        expect=(r"lo: <LOOPBACK",),
        expect_not=(r"tap1",),
        retry=3.0,
        explain="A veth pair lives and dies as one: when the namespace holding tap2 was freed "
                "(the kernel does it a moment later, in the background), tap2 went and tap1 "
                "with it. That is how a pod's veth disappears when the runtime deletes the "
                "pod's namespace.",
    ),
    TourStep(
        BUILD, "Remove the orange namespace too.",
        ("ip netns del {orange}", "ip netns list"),
        expect_not=(r"^{orange}\b", r"^{green}\b"),
        cleanup=True,
    ),
    TourStep(
        ADDRESS, "List the pods of a namespace with their addresses.",
        ("podnet get pods -n {other_ns} -o wide",),
        expect=(r"{other_name}\s+1/1\s+Running\s+\d+\s+{other_ip}(,\S+)?\s+{other_node}",),
        needs=("other",),
        explain="Every pod has an address from its node's pod CIDR; `kubectl get pods -o wide` "
                "shows the same columns.",
    ),
    TourStep(
        ADDRESS, "Look at that pod's /etc/hosts.",
        ("podnet exec -n {other_ns} {other_name} -- grep -v ip6 /etc/hosts",),
        expect=(r"# Kubernetes-managed hosts file\.", r"127\.0\.0\.1\s+localhost",
                r"{other_ip}\s+{other_name}"),
        needs=("other",),
        explain="The kubelet writes each pod's /etc/hosts: the pod's own name maps to its "
                "address, which belongs to eth0, the pod's end of its veth pair.",
    ),
    TourStep(
        ADDRESS, "Talk from that pod to {pod_key} by its pod address, across nodes.",
        ("podnet exec -n {other_ns} {other_name} -- curl -s http://{pod_host}:{port}",),
        expect=(r"Pod {pod_key} answered", r"node: (<b>)?{worker}"),
        needs=("other",),
        explain="The request leaves {other_name} by its eth0, crosses its veth pair into node "
                "{other_node}, which routes it over the node network to {worker}, which sends it "
                "down {pod_veth} into {pod_name}.",
        diagram="""
  pod {other_name} eth0 {other_ip}
   ══ veth ══ node {other_node} ── node network ──▶ node {worker} ══ veth ══
  pod {pod_name} eth0 {pod_ip}""",
        show_lines=12,
    ),
    TourStep(
        ADDRESS, "Follow that packet hop by hop, from the kernel's own answers.",
        ("podnet trace -q -n {other_ns} {other_name} {pod_key} --port {port}",),
        expect=(r"eth0 -> {other_veth} in node {other_node}",
                r"{pod_veth} -> eth0 in pod {pod_key}", r"works: path works"),
        needs=("other",),
        explain="Each hop is what the kernel answered in that namespace: the route lookup, the "
                "veth pair crossed, the bridge's forwarding entry; then a real connection "
                "confirms the path.",
    ),
    TourStep(
        ADDRESS, "Draw the whole lab (Mermaid, as the lesson's diagrams).",
        ("podnet graph -o mermaid",),
        expect=(r"\w+_label\[\"pod {pod_key}", r"\w+ === \w+"),
        explain="`podnet graph -o svg` or `--serve` draw the same picture as an image or a live "
                "page.",
        show_lines=16,
    ),
    TourStep(
        DNS, "Is it DNS? Look at the resolver configuration of {pod_key}.",
        ("podnet exec -n {pod_ns} {pod_name} -- cat /etc/resolv.conf",),
        expect=(r"search {pod_ns}\.svc\.{domain} svc\.{domain} {domain}",
                r"nameserver {dns_ip}", r"options ndots:5"),
        needs=("service",),
        explain="The kubelet gives each pod a resolv.conf (dnsPolicy ClusterFirst): one "
                "nameserver, the kube-dns Service's ClusterIP, and a search path that makes "
                "`{svc_name}` and `{svc_name}.{svc_ns}` full names. With ndots:5, a name of fewer "
                "than five dots is tried with each search domain first.",
    ),
    TourStep(
        DNS, "Resolve the Service's name as the pod's programs do (glibc).",
        ("podnet exec -n {pod_ns} {pod_name} -- getent ahosts {svc_name}.{svc_ns}",),
        # every address of the Service (a dual-stack one's IPv6 first, glibc's order), the
        # canonical name on the first line
        expect=(r"{svc_ip}\s+STREAM", r"STREAM {svc_fqdn}"),
        needs=("service",),
        retry=3.0,
        explain="glibc asked the nameserver for {svc_name}.{svc_ns}.{pod_ns}.svc.{domain} "
                "(NXDOMAIN, at once), then {svc_fqdn}: the Service's ClusterIP. No Service "
                "name is in /etc/hosts: every name comes from the cluster DNS.",
    ),
    TourStep(
        DNS, "Follow the name: the lookup, then the answer's path.",
        ("podnet trace -q -n {pod_ns} {pod_name} {svc_name}.{svc_ns} --port {svc_port}",),
        expect=(r"asked {dns_ip} port 53/udp: {svc_fqdn}\. \S+ -> NOERROR {svc_ip}",
                r"works: path works"),
        needs=("service",),
        explain="The trace resolves the name from inside the pod, as its resolver would, and "
                "shows each question: the query itself went to {dns_ip}, where the node's "
                "Service rules sent it to a coredns pod. Then it follows the answer, "
                "{svc_ip}, hop by hop.",
    ),
    TourStep(
        DNS, "Who answered: the coredns pods behind the kube-dns Service.",
        ("podnet get pods -n kube-system -o wide", "podnet get services -n kube-system"),
        expect=(r"coredns-\S+\s+1/1\s+Running", r"kube-dns\s+ClusterIP\s+{dns_ip}\s+"
                r"53/UDP,53/TCP,9153/TCP"),
        needs=("service",),
        explain="As on kind: two coredns replicas on the control-plane node, behind kube-dns at "
                "the 10th address of the service range. Their records change the moment a "
                "Service or pod does, with no restart.",
    ),
    TourStep(
        POLICY, "Deny every connection into the pods of namespace {pod_ns}.",
        (f"echo '{_DENY}' | podnet up -q -f -",),
        expect=(r"lab \S+ up",),
        needs=("other",),
        explain="A NetworkPolicy whose podSelector is empty selects every pod of its namespace; "
                "with policyTypes [Ingress] and no ingress rule, it allows nothing in. `podnet up "
                "-f -` applies it to the running lab, as `kubectl apply -f -` would: each node's "
                "nftables table gets the chains that enforce it.",
    ),
    TourStep(
        POLICY, "The same request as before gets no answer now.",
        ("podnet exec -n {other_ns} {other_name} -- curl -s -m 2 http://{pod_host}:{port}",),
        expect_not=(r"answered",),
        needs=("other",),
        fails=True,
        explain="The node drops the connection's first packet silently, as Kubernetes "
                "networks do: the client only sees a timeout. Denied traffic is logged nowhere, "
                "which is why the next step matters.",
    ),
    TourStep(
        POLICY, "Ask the kernel why: the trace names the policy.",
        ("podnet trace -q -n {other_ns} {other_name} {pod_key} --port {port}",),
        expect=(r"isolated for ingress by NetworkPolicy {pod_ns}/tour-deny-ingress",),
        needs=("other",),
        fails=True,
        explain="The tracer evaluates the node's rules as the kernel does and reads the comment "
                "on the rule that dropped the packet; the policy engine says which policies "
                "isolate the pod and that none allows this source.",
    ),
    TourStep(
        POLICY, "Allow the pods of namespace {other_ns} in, and try again.",
        (f"echo '{_ALLOW}' | podnet up -q -f -",
         "podnet exec -n {other_ns} {other_name} -- curl -s -m 2 http://{pod_host}:{port}"),
        expect=(r"Pod {pod_key} answered",),
        needs=("other",),
        show_lines=10,
        explain="Policies add up: the deny still selects the pod, and the new policy's rule "
                "allows this namespace in. No pod restarted: only the nodes' tables changed.",
    ),
    TourStep(
        POLICY, "Remove the two policies: the lab is as it was.",
        ("podnet delete networkpolicy -n {pod_ns} tour-deny-ingress tour-allow-{other_ns}",),
        expect=(r"networkpolicy {pod_ns}/tour-deny-ingress deleted",),
        needs=("other",),
        cleanup=True,
        explain="`podnet delete` (as `kubectl delete`) takes objects out of the running lab.",
    ),
)
