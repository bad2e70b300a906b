"""Can the children of a sweep reach its tracking store? A sqlite file only from the machine that holds it.

A child on another node that opens ``sqlite:///mlruns/mlflow.db`` silently creates an empty store of its
own there, and its run never reaches the parent's. So before anything runs:

* ``ray``: a sqlite store is refused when the address is ``ray://HOST:PORT`` with a HOST other than
  this machine, or when the cluster (connected) has an alive node at an address that is not this machine's;
* ``slurm`` (not submitit's local executor): a sqlite store is refused unless its file lies on a network
  or cluster filesystem, decided by the filesystem type of the mount that holds it
  (`psutil.disk_partitions`, the longest mount point that is a prefix of the file's real path):
  NFS, Lustre, GPFS, BeeGFS, CephFS, CIFS/SMB, GlusterFS, WekaFS, JuiceFS, SSHFS. Local disks, tmpfs and
  overlay mounts are per node.

The message points to the PostgreSQL tracking server set-up (docs/tracking.md).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from vlm_quant.errors import UserError

SHARED_FILESYSTEMS = (
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "ceph", "cephfs", "cifs", "smb3", "smbfs", "glusterfs",
    "fuse.glusterfs", "wekafs", "fuse.juicefs", "juicefs", "fuse.sshfs", "panfs", "fuse.beegfs",
)  # fmt: skip
LOOPBACK = {"localhost", "127.0.0.1", "::1", ""}
SERVER_HINT = (
    "Run an MLflow tracking server on PostgreSQL that every node reaches and export "
    "MLFLOW_TRACKING_URI=http://HOST:5000 (set-up: docs/tracking.md, 'A tracking server for several "
    "machines')."
)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (None for a server or a database over the network)."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve()


def filesystem_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` ('' when no mount matches)."""
    import psutil

    real = os.path.realpath(path if path.exists() else path.parent)
    best, fstype = "", ""
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint.rstrip("/") or "/"
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, part.fstype
    return fstype


def check_slurm_store(tracking_uri: str, cluster: str) -> None:
    """UserError when SLURM array tasks could not write to ``tracking_uri`` (see the module docstring)."""
    path = sqlite_path(tracking_uri)
    if path is None or cluster != "slurm":
        return
    fstype = filesystem_type(path)
    if fstype.lower() not in SHARED_FILESYSTEMS:
        raise UserError(
            f"--launcher slurm: the tracking store is the sqlite file {path}, on a {fstype or 'unknown'} "
            "filesystem that other nodes do not see, so the children's runs would be lost. " + SERVER_HINT
        )


def check_ray_store(tracking_uri: str, address: str | None, node_addresses: list[str] | None) -> None:
    """UserError when Ray tasks on other machines could not write to ``tracking_uri``.

    ``node_addresses``: the alive nodes of the connected cluster (None: not connected yet)."""
    path = sqlite_path(tracking_uri)
    if path is None:
        return
    host = urlparse(address).hostname if address and address.startswith("ray://") else None
    if host is not None and not is_this_machine(host):
        raise UserError(
            f"--launcher ray --ray-address {address}: the tracking store is the sqlite file {path} on "
            "this machine, which the cluster's nodes cannot write to. " + SERVER_HINT
        )
    others = [node for node in node_addresses or [] if not is_this_machine(node)]
    if others:
        raise UserError(
            f"--launcher ray: the Ray cluster has nodes on other machines ({', '.join(sorted(others))}), "
            f"which cannot write to the sqlite tracking store {path}. " + SERVER_HINT
        )


def is_this_machine(host: str) -> bool:
    """``host`` (a name or an address) is a loopback address or one of this machine's addresses."""
    if host in LOOPBACK or host.startswith("127."):
        return True
    import psutil

    mine = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
    mine |= {socket.gethostname(), socket.getfqdn()}
    try:
        resolved = socket.gethostbyname(host)
    except OSError:
        resolved = host
    return host in mine or resolved in mine or resolved.startswith("127.")
