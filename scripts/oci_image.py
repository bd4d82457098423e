#!/usr/bin/env python3
"""Writes a single-layer OCI image, as an OCI image layout packed in a tar, around one binary.

Needs neither Docker nor a registry, only Python's stdlib, `strip` and `ldd`:

    oci_image.py --out tiepdan-operator.oci.tar \\
        --name ghcr.io/tiepdan/tiepdan-operator:0.1.0 \\
        --binary target/release/tiepdan-operator --user 65532:65532 \\
        --label org.opencontainers.image.title=tiepdan-operator [--ca-certs FILE] [--bare]

The layer holds a stripped copy of the binary (at /usr/local/bin/<name> unless --path says
otherwise), exactly the shared libraries `ldd` reports plus the dynamic loader, and, unless --bare,
/etc/passwd and /etc/group (root and nonroot 65532), a minimal /etc/nsswitch.conf, /home/nonroot
and /tmp (1777). There is no shell, package manager or busybox: nothing is in the layer that this
script does not name.

The archive is reproducible: sorted entries, uid/gid 0 (except /home/nonroot), mtimes and the
config's `created` from SOURCE_DATE_EPOCH (default 0), gzip with mtime 0. It is written to a
temporary file and renamed. Beside it, `<out>.stamp` holds a digest of every input (this script,
the arguments, each packed host file's contents); when it matches, nothing is rebuilt.

`ctr -n k8s.io images import` takes the name from the index's `io.containerd.image.name`
annotation; skopeo (`oci-archive:<file>`) reads the layout as is.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone

# The image's Go-style architecture names for the machines we build on.
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
NONROOT = 65532
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Like distroless: root and nonroot (65532), neither with a shell to log in with.
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnonroot:x:{NONROOT}:\n"
# glibc >= 2.34 has the files and dns services built into libc.so.6, so no libnss_*.so is needed.
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"


class Refused(Exception):
    """An input is missing or unusable; the message names it."""


@dataclass
class Entry:
    """One layer entry: `kind` is "dir", "file" or "symlink"."""

    kind: str
    mode: int = 0o755
    uid: int = 0
    # A file's contents come from `host` (a path on this machine) or `data`.
    host: str | None = None
    data: bytes | None = None
    target: str | None = None


class Layer:
    """The layer's entries by absolute path; parent directories are added as needed."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _put(self, path: str, entry: Entry) -> None:
        old = self.entries.get(path)
        if old is not None:
            if old == entry:
                return
            if old.kind == "dir" and entry.kind == "dir":
                # An explicit mode (e.g. /tmp's 1777) wins over an implied parent's 0755.
                self.entries[path] = entry if entry.mode != 0o755 else old
                return
            raise Refused(f"{path} is wanted in the layer both as {old.kind} and as {entry.kind}")
        parent = os.path.dirname(path)
        if parent != "/":
            self.dir(parent)
        self.entries[path] = entry

    def dir(self, path: str, mode: int = 0o755, uid: int = 0) -> None:
        self._put(path, Entry("dir", mode, uid))

    def text(self, path: str, data: str, mode: int = 0o644) -> None:
        self._put(path, Entry("file", mode, data=data.encode()))

    def host_file(self, image_path: str, host: str, mode: int | None = None) -> None:
        if mode is None:
            # Normalized, so the archive does not depend on this machine's umask.
            mode = 0o755 if os.stat(host).st_mode & 0o111 else 0o644
        self._put(image_path, Entry("file", mode, host=host))

    def host_path(self, path: str) -> None:
        """Adds `path` the way the kernel resolves it: every symlink met on the way (e.g.
        /lib64 -> usr/lib64 on a merged-/usr Debian, then the loader's own symlink) becomes the
        same symlink in the layer, the file itself is copied at its real path. So the paths the
        binary and the loader ask for resolve inside the image exactly as they do here."""
        if not os.path.lexists(path):
            raise Refused(f"{path} does not exist on this machine")
        parts = [p for p in path.split("/") if p]
        current = "/"
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                current = os.path.dirname(current)
                continue
            here = os.path.join(current, name)
            if os.path.islink(here):
                hops += 1
                if hops > 40:
                    raise Refused(f"too many symlinks resolving {path}")
                target = os.readlink(here)
                self._put(here, Entry("symlink", 0o777, target=target))
                parts = [p for p in target.split("/") if p] + parts
                if target.startswith("/"):
                    current = "/"
                continue
            if parts:
                if not os.path.isdir(here):
                    raise Refused(f"{here} (on the way to {path}) is not a directory")
                self.dir(here)
                current = here
            elif os.path.isfile(here):
                self.host_file(here, here)
            else:
                raise Refused(f"{here} (for {path}) is not a regular file")


def elf_interpreter(path: str) -> str | None:
    """The binary's PT_INTERP (its dynamic loader), or None for a static executable."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            raise Refused(f"{path} is not an ELF executable")
        if head[4] != 2 or head[5] != 1:
            raise Refused(f"{path} is not a 64-bit little-endian ELF")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
            if p_type == 3:  # PT_INTERP
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    return None


def shared_libraries(binary: str) -> list[str]:
    """The paths `ldd` resolves for `binary`, the loader included; refuses an unresolved one."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise Refused(f"ldd {binary} failed: {out.stderr.strip() or out.stdout.strip()}")
    paths = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("linux-vdso.so") or line.startswith("linux-gate.so"):
            continue
        if "=> not found" in line:
            raise Refused(f"{binary} needs {line.split()[0]}, which ldd cannot find")
        if "=>" in line:
            path = line.split("=>", 1)[1].strip().split(" (")[0].strip()
        else:
            path = line.split(" (")[0].strip()
        if path.startswith("/"):
            paths.append(path)
    return paths


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plan(args: argparse.Namespace) -> tuple[Layer, str]:
    """The layer's entries (host files not read yet) and the binary's path in the image."""
    for what, path in (("binary", args.binary), ("CA bundle", args.ca_certs)):
        if path is not None and not os.path.isfile(path):
            raise Refused(f"{what} {path} does not exist (or is not a file)")
    image_path = args.path or f"/usr/local/bin/{os.path.basename(args.binary)}"
    if not image_path.startswith("/"):
        raise Refused(f"--path {image_path} must be absolute")
    layer = Layer()
    layer.host_file(image_path, os.path.realpath(args.binary), mode=0o755)
    interpreter = elf_interpreter(args.binary)
    if interpreter is not None:
        libraries = shared_libraries(args.binary)
        if interpreter not in libraries:
            libraries.append(interpreter)
        for lib in libraries:
            layer.host_path(lib)
    if not args.bare:
        layer.text("/etc/passwd", PASSWD)
        layer.text("/etc/group", GROUP)
        layer.text("/etc/nsswitch.conf", NSSWITCH)
        layer.dir("/root", 0o700)
        layer.dir("/home/nonroot", 0o700, uid=NONROOT)
        layer.dir("/tmp", 0o1777)
    if args.ca_certs is not None:
        layer.host_path(args.ca_certs)
    return layer, image_path


def inputs_digest(args: argparse.Namespace, layer: Layer, epoch: int) -> str:
    """A digest of everything the archive is made from, for the stamp."""
    h = hashlib.sha256()
    with open(__file__, "rb") as f:
        h.update(f.read())
    described = {k: v for k, v in sorted(vars(args).items()) if k != "out"}
    h.update(json.dumps({"args": described, "epoch": epoch}, sort_keys=True).encode())
    for path, e in sorted(layer.entries.items()):
        content = sha256_file(e.host) if e.host else hashlib.sha256(e.data or b"").hexdigest()
        h.update(f"\n{path} {e.kind} {e.mode:o} {e.uid} {e.target} {content}".encode())
    return h.hexdigest()


def tar_info(name: str, kind: str, mode: int, uid: int, size: int, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE}[kind]
    info.mode = mode
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    info.mtime = epoch
    info.size = size
    return info


def layer_tar(layer: Layer, binary_image_path: str, binary: str, epoch: int, work: str) -> bytes:
    """The uncompressed layer; the binary is stripped from a copy, never in place."""
    stripped = os.path.join(work, "stripped")
    result = subprocess.run(["strip", "--strip-all", "-o", stripped, binary], capture_output=True, text=True)
    if result.returncode != 0:
        raise Refused(f"strip {binary} failed: {result.stderr.strip()}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, e in sorted(layer.entries.items()):
            name = path.lstrip("/")
            if e.kind == "file":
                if path == binary_image_path:
                    with open(stripped, "rb") as f:
                        data = f.read()
                elif e.host is not None:
                    with open(e.host, "rb") as f:
                        data = f.read()
                else:
                    data = e.data or b""
                tar.addfile(tar_info(name, "file", e.mode, e.uid, len(data), epoch), io.BytesIO(data))
            else:
                info = tar_info(name, e.kind, e.mode, e.uid, 0, epoch)
                if e.kind == "symlink":
                    info.linkname = e.target or ""
                tar.addfile(info)
    return buf.getvalue()


def blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build(args: argparse.Namespace, layer: Layer, image_path: str, epoch: int, work: str) -> dict:
    """Writes the archive to a temporary file beside --out, renames it, and returns a summary."""
    raw = layer_tar(layer, image_path, args.binary, epoch, work)
    compressed = gzip.compress(raw, compresslevel=9, mtime=0)
    layer_digest, _ = blob(compressed)
    arch = ARCHITECTURES.get(platform.machine(), platform.machine())
    created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = dict(label.split("=", 1) for label in args.label)
    config = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": [image_path],
            "Env": [DEFAULT_PATH] + args.env,
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created": created, "created_by": "scripts/oci_image.py"}],
    }
    config_digest, config_bytes = blob(canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(compressed)}],
    }
    manifest_digest, manifest_bytes = blob(canonical(manifest))
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    # containerd's import names the image after this; skopeo and umoci use the tag.
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    files = {
        "oci-layout": canonical({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical(index),
        f"blobs/sha256/{layer_digest[7:]}": compressed,
        f"blobs/sha256/{config_digest[7:]}": config_bytes,
        f"blobs/sha256/{manifest_digest[7:]}": manifest_bytes,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".oci-", suffix=".partial", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for d in ("blobs", "blobs/sha256"):
                tar.addfile(tar_info(d, "dir", 0o755, 0, 0, epoch))
            for name in sorted(files):
                data = files[name]
                tar.addfile(tar_info(name, "file", 0o644, 0, len(data), epoch), io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.out)
    except BaseException:
        os.unlink(tmp)
        raise
    return {
        "image": args.name,
        "archive_bytes": os.path.getsize(args.out),
        "layer_gzip_bytes": len(compressed),
        "layer_tar_bytes": len(raw),
        "manifest": manifest_digest,
    }


def describe(out: str, summary: dict, state: str) -> str:
    mib = 1024 * 1024
    return (
        f"{os.path.basename(out)} ({state}): {summary['image']}, archive {summary['archive_bytes']} B "
        f"({summary['archive_bytes'] / mib:.1f} MiB), layer {summary['layer_tar_bytes']} B "
        f"({summary['layer_tar_bytes'] / mib:.1f} MiB) uncompressed, {summary['manifest']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the archive to write (<name>.oci.tar)")
    parser.add_argument("--name", required=True, help="the image reference, e.g. ghcr.io/x/y:1.0")
    parser.add_argument("--binary", required=True, help="the executable (copied, then stripped)")
    parser.add_argument("--path", help="its path in the image; default /usr/local/bin/<file name>")
    parser.add_argument("--user", required=True, help="the config's User, e.g. 65532:65532")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE, repeatable")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE beside PATH, repeatable")
    parser.add_argument("--ca-certs", help="a CA bundle to include at its path (for native roots)")
    parser.add_argument("--bare", action="store_true", help="only the binary and its libraries")
    args = parser.parse_args()
    for kv in args.label + args.env:
        if "=" not in kv:
            parser.error(f"{kv!r} is not KEY=VALUE")
    for tool in ("strip", "ldd"):
        if shutil.which(tool) is None:
            print(f"oci_image.py: {tool} is not installed (binutils / libc-bin)", file=sys.stderr)
            return 1
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    try:
        layer, image_path = plan(args)
        digest = inputs_digest(args, layer, epoch)
        stamp = args.out + ".stamp"
        if os.path.isfile(args.out) and os.path.isfile(stamp):
            with open(stamp) as f:
                lines = f.read().splitlines()
            if len(lines) == 2 and lines[0] == digest:
                print(describe(args.out, json.loads(lines[1]), "up to date"))
                return 0
        with tempfile.TemporaryDirectory() as work:
            summary = build(args, layer, image_path, epoch, work)
        with open(stamp + ".partial", "w") as f:
            f.write(digest + "\n" + json.dumps(summary, sort_keys=True) + "\n")
        os.replace(stamp + ".partial", stamp)
        print(describe(args.out, summary, "built"))
        return 0
    except Refused as e:
        print(f"oci_image.py: {args.out}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
