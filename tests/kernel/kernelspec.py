"""Shared by the kernel tests: Debian's Jupyter packages, and a kernelspec for the
mile under test in a temporary directory (JUPYTER_PATH), so that nothing global is
read or written.

The tests run under /usr/bin/python3: Debian's interpreter, the one that has
python3-jupyter-client and python3-nbconvert (a `python3` earlier on PATH may be
another installation without them)."""
import json
import os
import sys
import tempfile

MISSING = ("the kernel tests need Debian's Jupyter packages (python3-jupyter-client, "
           "python3-nbconvert, jupyter-nbconvert): run scripts/setup-deps.sh as root")


def require_jupyter(nbconvert=False):
    """Import jupyter_client and zmq (and nbconvert, nbformat), or stop the test with
    a clear failure."""
    try:
        import jupyter_client  # noqa: F401
        import zmq  # noqa: F401
        if nbconvert:
            import nbconvert  # noqa: F401
            import nbformat  # noqa: F401
    except ImportError as e:
        sys.stderr.write("FAIL: %s (%s, interpreter %s)\n" % (MISSING, e, sys.executable))
        sys.exit(1)


def make_kernelspec(mile, wrapper=()):
    """A temporary Jupyter data dir holding kernels/mile/kernel.json that starts
    `mile --kernel` (behind `wrapper`, e.g. valgrind); sets JUPYTER_PATH and a
    private runtime dir in os.environ. Returns the TemporaryDirectory (keep it)."""
    tmp = tempfile.TemporaryDirectory(prefix="mile-kernel-")
    spec_dir = os.path.join(tmp.name, "kernels", "mile")
    os.makedirs(spec_dir)
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump({"argv": list(wrapper) + [os.path.abspath(mile), "--kernel", "{connection_file}"],
                   "display_name": "mile (Lua 5.4)", "language": "lua", "interrupt_mode": "signal"}, f)
    os.environ["JUPYTER_PATH"] = tmp.name
    os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(tmp.name, "runtime")
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"  # jupyter_core 5: no deprecation warning
    return tmp
