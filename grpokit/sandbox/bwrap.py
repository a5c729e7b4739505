"""Building the bubblewrap command line, and finding the interpreter that runs inside it.

Two shapes, picked by who we are:

- *unprivileged* (the trainer runs as a normal user): bwrap creates a user namespace and from it
  all the others (`--unshare-all`), drops every capability, and `--disable-userns` stops the
  program from creating nested user namespaces. The program runs as the trainer's own uid,
  which the kernel does not exempt from RLIMIT_NPROC.
- *root* (CI containers): a user namespace created by root maps the sandbox to host uid 0, and the
  kernel never enforces RLIMIT_NPROC for uid 0, so a fork bomb would be unbounded. Instead bwrap
  (privileged) unshares every namespace except the user one, keeps only CAP_SETUID/CAP_SETGID,
  and the harness' first act is to switch to a fresh random uid (which clears those too), then to
  create a user namespace of its own that forbids nested ones (what --disable-userns does).
"""

from __future__ import annotations

import os
import shutil
import sys

MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
SANDBOX_TMP = "/tmp"  # the private, size-capped, writable tmpfs; also the working directory
_SHM_BYTES = 8 << 20
_SYSTEM_TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def find_bwrap(explicit: str | None = None) -> str | None:
    """Path of the bwrap executable, or None. `explicit` wins over $PATH."""
    if explicit is not None:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    return shutil.which("bwrap")


def base_interpreter() -> str:
    """The base interpreter (sys.base_prefix), never the venv's: the trainer's packages stay out."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for name in (version, "python3"):
        candidate = os.path.join(sys.base_prefix, "bin", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    raise FileNotFoundError(f"no {version} interpreter under {sys.base_prefix}/bin")


def interpreter_dirs(python: str) -> list[str]:
    """Host directories the interpreter needs, beyond /usr (bound read-only at the same path)."""
    dirs = []
    for path in (os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(python))):
        if not (path == "/usr" or path.startswith("/usr/")) and path not in dirs:
            dirs.append(path)
    return dirs


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_TOP_DIRS:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]


def _read_only_tree(dirs: list[str]) -> list[str]:
    """Bind each dir read-only; create its parents world-traversable (bwrap copies host modes,
    and e.g. /root is 0700, which the unprivileged sandbox user could not enter)."""
    args: list[str] = []
    made: set[str] = set()
    for path in dirs:
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:depth])
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", parent]
        args += ["--ro-bind", path, path]
    return args


def build_argv(
    bwrap: str, python: str, command: list[str], *, privileged: bool, tmpfs_bytes: int
) -> list[str]:
    """Full bwrap command line that runs `command` (the harness) in a fresh sandbox."""
    argv = [bwrap, "--die-with-parent", "--new-session", "--as-pid-1"]
    if privileged:
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-all", "--unshare-user", "--disable-userns"]  # bwrap drops all caps
    argv += ["--clearenv", "--setenv", "PATH", MINIMAL_PATH, "--hostname", "sandbox"]
    argv += _system_binds() + _read_only_tree(interpreter_dirs(python))
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--perms", "1777", "--size", str(_SHM_BYTES), "--tmpfs", "/dev/shm"]
    argv += ["--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", SANDBOX_TMP]
    argv += ["--chdir", SANDBOX_TMP, "--remount-ro", "/", "--"]
    return argv + command
