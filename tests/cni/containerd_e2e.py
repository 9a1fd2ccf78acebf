"""End to end: containerd + runc start two busybox containers on podnet-cni; one fetches a page
from the other over HTTP.

Run by test_containerd_e2e.py as `unshare --mount --propagation private python -m
tests.cni.containerd_e2e`, inside the test sandbox. Everything lives in a temporary directory
under /run (the sandbox's tmpfs): containerd's root, state and socket, the image, podnet's agent
socket. `ctr run --cni` reads the CNI configuration from go-cni's fixed places (/etc/cni/net.d,
plugins in /opt/cni/bin), so this process lays overlays on /etc, /opt and /var/lib (libcni's
result cache) in its private mount namespace and bind-mounts the temporary CNI directories there;
containerd's own config points its CRI plugin at the same temporary directories. Nothing of the
machine's is written. Every process started here is stopped by PID before exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

IMAGE = "docker.io/podnet/busybox:e2e"
APPLETS = ("sh", "httpd", "wget", "timeout", "sleep", "ip", "echo", "cat", "mkdir", "true")
PAGE = "podnet-e2e-ok"


def log(msg: str) -> None:
    print(f"[e2e] {msg}", flush=True)


def _run(*cmd: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout}"
                           f"{proc.stderr}")
    return proc


def _blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def build_image(root: Path) -> Path:
    """An OCI image archive with one layer: busybox-static and the applets the test uses."""
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
    layout = root / "oci"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_digest, layer_size = _blob(blobs, layer.getvalue())
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
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
        "size": manifest_size, "annotations": {"io.containerd.image.name": IMAGE,
                                                "org.opencontainers.image.ref.name": "e2e"}}]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    archive = root / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return archive


def overlay(target: str, root: Path) -> None:
    """Make `target` writable in this mount namespace only (its changes land in `root`)."""
    name = target.strip("/").replace("/", "_")
    upper, work = root / f"{name}-upper", root / f"{name}-work"
    upper.mkdir()
    work.mkdir()
    _run("mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={target},upperdir={upper},workdir={work}", target)


def containerd_config(root: Path, bin_dir: Path, conf_dir: Path) -> Path:
    path = root / "containerd.toml"
    path.write_text(f"""version = 2
root = "{root}/containerd-root"
state = "{root}/containerd-state"
[grpc]
  address = "{root}/containerd.sock"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{bin_dir}"
  conf_dir = "{conf_dir}"
""")
    return path


def wait_for(path: Path, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not create {path}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], what: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log(f"stopped {what} (pid {proc.pid})")


def stop_shims(address: str) -> None:
    """The runc shims containerd started for our tasks, found by PID and our socket address."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" in cmdline[0] and address.encode() in cmdline:
                os.kill(int(entry), signal.SIGKILL)
                log(f"stopped shim pid {entry}")


def main() -> int:  # one linear story, easier read top to bottom
    from podnet.cni.install import InstallOptions, install

    root = Path(tempfile.mkdtemp(prefix="podnet-e2e-", dir="/run"))
    bin_dir, conf_dir = root / "cni-bin", root / "cni-conf"
    agent_socket = root / "agent.sock"
    ctr_address = str(root / "containerd.sock")
    done = install(InstallOptions(bin_dir=str(bin_dir), conf_dir=str(conf_dir),
                                  subnet="10.88.0.0/24", socket=str(agent_socket)))
    log(f"installed {done.executables} ({done.client} client) and {done.conflist}")
    for target in ("/etc", "/opt", "/var/lib"):
        overlay(target, root)
    for target, source in (("/etc/cni/net.d", conf_dir), ("/opt/cni/bin", bin_dir)):
        os.makedirs(target, exist_ok=True)
        _run("mount", "--bind", str(source), target)
    env = {**os.environ}
    agent = subprocess.Popen(
        [sys.executable, "-c", "from podnet.cli.main import main; main()", "cni", "agent",
         "--socket", str(agent_socket)], env=env)
    containerd: subprocess.Popen[bytes] | None = None
    started: list[str] = []
    try:
        wait_for(agent_socket, agent, "podnet cni agent")
        config = containerd_config(root, bin_dir, conf_dir)
        with open(root / "containerd.log", "wb") as logfile:
            containerd = subprocess.Popen(["containerd", "--config", str(config)],
                                          stdout=logfile, stderr=subprocess.STDOUT)
        wait_for(Path(ctr_address), containerd, "containerd")
        ctr = ("ctr", "--address", ctr_address)
        archive = build_image(root)
        _run(*ctr, "images", "import", str(archive))
        images = _run(*ctr, "images", "ls", "-q").stdout.split()
        log(f"images: {images}")
        assert IMAGE in images, images
        _run(*ctr, "run", "-d", "--cni", "--null-io", IMAGE, "web", "sh", "-c",
             f"echo {PAGE} > /www/index.html && exec httpd -f -p 80 -h /www")
        started.append("web")
        _run(*ctr, "run", "-d", "--cni", "--null-io", IMAGE, "client", "sleep", "600")
        started.append("client")
        addr = _run(*ctr, "tasks", "exec", "--exec-id", "ip1", "web", "ip", "-4", "-o",
                    "addr", "show", "eth0").stdout
        web_ip = addr.split("inet ")[1].split("/")[0]
        log(f"web container has {web_ip} on eth0")
        page = ""
        for _ in range(50):  # httpd may need a moment to listen
            got = _run(*ctr, "tasks", "exec", "--exec-id", f"get{_}", "client", "timeout", "5",
                       "wget", "-q", "-O", "-", f"http://{web_ip}/", check=False)
            page = got.stdout.strip()
            if page == PAGE:
                break
            time.sleep(0.1)
        log(f"client fetched {page!r} from http://{web_ip}/")
        assert page == PAGE
        return_code = 0
    finally:
        if containerd is not None and containerd.poll() is None:
            ctr = ("ctr", "--address", ctr_address)
            for name in reversed(started):
                _run(*ctr, "tasks", "kill", "-s", "SIGKILL", name, check=False)
            for name in reversed(started):
                for _ in range(100):
                    if _run(*ctr, "tasks", "delete", name, check=False).returncode == 0:
                        break
                    time.sleep(0.05)
                _run(*ctr, "containers", "delete", name, check=False)
        if containerd is not None:
            stop(containerd, "containerd")
        stop_shims(ctr_address)
        stop(agent, "podnet cni agent")
    # ctr 1.6 runs CNI DEL only for `ctr run --rm`; a detached task's network is ours to undo,
    # as a runtime would, with the same plugin: proving DEL through the installed executable.
    conflist = json.loads((conf_dir / "10-podnet.conflist").read_text())
    plugin = {"cniVersion": conflist["cniVersion"], "name": conflist["name"],
              **conflist["plugins"][0]}
    allocations = Path("/run/podnet/ipam/podnet/allocations.json")
    log(f"reservations after ctr removed the tasks: {allocations.read_text().strip()}")
    for name in started:
        proc = subprocess.run(
            [str(bin_dir / "podnet-cni")], input=json.dumps(plugin).encode(),
            env={"CNI_COMMAND": "DEL", "CNI_CONTAINERID": f"default-{name}", "CNI_NETNS": "",
                 "CNI_IFNAME": "eth0", "CNI_PATH": str(bin_dir), "PATH": "/usr/sbin:/usr/bin"},
            capture_output=True, check=False)
        log(f"DEL default-{name}: exit {proc.returncode} {proc.stdout.decode().strip()}")
        if proc.returncode != 0:
            return_code = 1
    left = json.loads(allocations.read_text())["allocations"]
    log(f"reservations after DEL: {left}")
    return return_code if not left else 1


if __name__ == "__main__":
    sys.exit(main())
