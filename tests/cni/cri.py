"""A node as kubelet drives it: containerd 1.6 with its CRI plugin, spoken to over gRPC with
PyPI's CRI v1 stubs (`container-runtime-interface-api`), its CNI being podnet as `podnet cni
install` sets it up.

Everything stays inside the test sandbox: containerd's root, state, sockets and opt directory
live in a directory under /run (the sandbox's tmpfs), images are built here from busybox-static
(a pause image whose entrypoint is busybox's `sleep`, and an app image with the applets the tests
use), and libcni's result cache plus podnet-ipam's reservations go to /var/lib/cni, which the
`var_lib_cni` fixture overlays with a tmpfs in the sandbox's private mount namespace. Every
process started here is stopped by PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["APP", "PAUSE", "Node", "Pod", "build_image", "node", "overlay_var_lib"]

PAUSE = "podnet.test/pause:1"
APP = "podnet.test/busybox:1"
APPLETS = ("sh", "httpd", "wget", "timeout", "sleep", "ip", "echo", "cat", "mkdir", "true",
           "nc", "hostname")


def _blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def build_image(root: Path, name: str, entrypoint: list[str]) -> Path:
    """An OCI image archive with one layer: busybox-static and a few applets."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "proc", "sys", "dev", "tmp", "www", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size, info.mode = len(passwd), 0o644
        tar.addfile(info, io.BytesIO(passwd))
    layout = root / f"oci-{name.replace('/', '_').replace(':', '_')}"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_digest, layer_size = _blob(blobs, layer.getvalue())
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}
    config_digest, config_size = _blob(blobs, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer_digest, "size": layer_size}]}
    manifest_digest, manifest_size = _blob(blobs, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest_size, "annotations": {"io.containerd.image.name": name,
                                                "org.opencontainers.image.ref.name": "1"}}]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    archive = layout.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return archive


@dataclass
class Pod:
    name: str
    id: str
    config: Any  # the PodSandboxConfig, which CreateContainer needs again
    containers: list[str] = field(default_factory=list)


class Node:
    """containerd + CRI on one directory; `start`, `restart(crash=...)`, `close`."""

    def __init__(self, root: Path, cni_bin: str, cni_conf: str) -> None:
        self.root = root
        self.persistent = root / "persistent"  # containerd's root: what a reboot keeps
        self.state = root / "state"  # containerd's state: /run on a node, gone at reboot
        self.address = str(root / "containerd.sock")
        self.cni_bin, self.cni_conf = cni_bin, cni_conf
        self.proc: subprocess.Popen[bytes] | None = None
        self._stub: Any = None
        self._channel: Any = None

    # --- containerd ---------------------------------------------------------------------------

    def _config(self) -> Path:
        path = self.root / "containerd.toml"
        path.write_text(f"""version = 2
root = "{self.persistent}"
state = "{self.state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.cni_bin}"
    conf_dir = "{self.cni_conf}"
    max_conf_num = 1
""")
        return path

    def start(self) -> None:
        config = self._config()
        with open(self.root / "containerd.log", "ab") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log_tail()}")
            if os.path.exists(self.address):
                try:
                    self.runtime.Version(self.cri.VersionRequest(), timeout=2)
                    status = self.runtime.Status(self.cri.StatusRequest(), timeout=5)
                    ready = {c.type: c.status for c in status.status.conditions}
                    if ready.get("NetworkReady"):
                        return
                except Exception:  # not up yet
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd's CRI did not get ready: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "containerd.log").read_text()[-3000:]
        return ""

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (a service restart) or SIGKILL (a crash); tasks keep running in their
        shims either way, as on a node."""
        self._close_channel()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, *, crash: bool = False) -> None:
        self.stop(crash=crash)
        self.start()

    def shim_pids(self) -> list[int]:
        """The runc shims started for this containerd (their command line names its socket)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if b"containerd-shim" in argv[0] and self.address.encode() in argv:
                    found.append(int(entry))
        return found

    def kill_tasks(self) -> None:
        """Every shim and what runs under it (pause, containers): what a power cut does."""
        shims = self.shim_pids()
        children = []
        for entry in os.listdir("/proc"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) in shims:
                    children.append(int(entry))
        for pid in [*children, *shims]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            for pod in self.list_pods():
                self.remove_pod(pod)
        self.stop()
        self.kill_tasks()

    # --- CRI ----------------------------------------------------------------------------------

    @property
    def cri(self) -> Any:
        from cri_api.v1 import api_pb2

        return api_pb2

    @property
    def runtime(self) -> Any:
        if self._stub is None:
            import grpc
            from cri_api.v1 import api_pb2_grpc

            self._channel = grpc.insecure_channel(f"unix://{self.address}")
            self._stub = api_pb2_grpc.RuntimeServiceStub(self._channel)
        return self._stub

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    def import_images(self) -> None:
        for name, entrypoint in ((PAUSE, ["/bin/sleep", "1000000000"]), (APP, ["/bin/sh"])):
            archive = build_image(self.root, name, entrypoint)
            subprocess.run(["ctr", "--address", self.address, "-n", "k8s.io", "images",
                            "import", "--no-unpack", str(archive)], check=True,
                           capture_output=True)

    def sandbox_config(self, name: str, attempt: int = 0, uid: str | None = None,
                       host_ports: dict[int, int] | None = None) -> Any:
        """A pod's sandbox, as kubelet describes it; `host_ports` maps a hostPort to a
        containerPort (TCP), which containerd hands to the portmap plugin."""
        cri = self.cri
        ports = [cri.PortMapping(protocol=cri.TCP, container_port=inner, host_port=outer)
                 for outer, inner in (host_ports or {}).items()]
        return cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, uid=uid or uuid.uuid4().hex,
                                            namespace="default", attempt=attempt),
            hostname=name, log_directory=str(self.root / "logs" / name), port_mappings=ports,
            linux=cri.LinuxPodSandboxConfig(cgroup_parent=""),
        )

    def run_pod(self, name: str, attempt: int = 0, uid: str | None = None,
                host_ports: dict[int, int] | None = None) -> Pod:
        config = self.sandbox_config(name, attempt, uid, host_ports)
        reply = self.runtime.RunPodSandbox(self.cri.RunPodSandboxRequest(config=config),
                                           timeout=60)
        return Pod(name, reply.pod_sandbox_id, config)

    def start_container(self, pod: Pod, name: str, command: list[str]) -> str:
        cri = self.cri
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name), image=cri.ImageSpec(image=APP),
            command=command, log_path=f"{name}.log", linux=cri.LinuxContainerConfig())
        created = self.runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config), timeout=60)
        self.runtime.StartContainer(cri.StartContainerRequest(
            container_id=created.container_id), timeout=60)
        pod.containers.append(created.container_id)
        return str(created.container_id)

    def exec(self, container: str, command: list[str], timeout: int = 10) -> tuple[int, str]:
        reply = self.runtime.ExecSync(self.cri.ExecSyncRequest(
            container_id=container, cmd=command, timeout=timeout), timeout=timeout + 10)
        return int(reply.exit_code), reply.stdout.decode(errors="replace")

    def status(self, pod: Pod | str) -> Any:
        pod_id = pod.id if isinstance(pod, Pod) else pod
        return self.runtime.PodSandboxStatus(self.cri.PodSandboxStatusRequest(
            pod_sandbox_id=pod_id, verbose=True), timeout=30)

    def pod_ip(self, pod: Pod) -> str:
        return str(self.status(pod).status.network.ip)

    def pause_pid(self, pod: Pod) -> int:
        return int(json.loads(self.status(pod).info["info"])["pid"])

    def netns(self, pod: Pod) -> str:
        """The path of the pod's network namespace, as containerd passed it to CNI."""
        spaces = json.loads(self.status(pod).info["info"])["runtimeSpec"]["linux"]["namespaces"]
        return str(next(n["path"] for n in spaces if n["type"] == "network"))

    def stop_pod(self, pod: Pod | str) -> None:
        pod_id = pod.id if isinstance(pod, Pod) else pod
        self.runtime.StopPodSandbox(self.cri.StopPodSandboxRequest(pod_sandbox_id=pod_id),
                                    timeout=60)

    def remove_pod(self, pod: Pod | str) -> None:
        pod_id = pod.id if isinstance(pod, Pod) else pod
        self.stop_pod(pod_id)
        self.runtime.RemovePodSandbox(self.cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                                      timeout=60)

    def list_pods(self) -> list[str]:
        reply = self.runtime.ListPodSandbox(self.cri.ListPodSandboxRequest(), timeout=30)
        return [p.id for p in reply.items]

    def ready(self, pod: Pod) -> bool:
        return bool(self.status(pod).status.state == self.cri.SANDBOX_READY)


@contextlib.contextmanager
def node(root: Path, cni_bin: str, cni_conf: str) -> Iterator[Node]:
    made = Node(root, cni_bin, cni_conf)
    try:
        made.start()
        made.import_images()
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def overlay_var_lib(work: Path) -> Iterator[None]:
    """/var/lib made writable in this mount namespace only, its changes landing in `work` (a
    tmpfs directory): libcni's cache and podnet-ipam's reservations live in /var/lib/cni. Only
    for a private mount namespace (the sandbox's)."""
    if os.environ.get("PODNET_SANDBOX") != "1":
        raise RuntimeError("overlay_var_lib: only inside the sandbox")
    (work / "upper").mkdir(parents=True)
    (work / "work").mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir=/var/lib,upperdir={work}/upper,workdir={work}/work", "/var/lib"],
                   check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", "/var/lib"], check=False)
