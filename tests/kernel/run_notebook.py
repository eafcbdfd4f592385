#!/usr/bin/python3
"""Execute one notebook headless with the mile kernel, as a reader would:

    /usr/bin/python3 tests/kernel/run_notebook.py build/mile notebooks/NAME.ipynb
        [--jupyter /usr/bin/jupyter] [--data-dir build/share/jupyter]

nbconvert runs every cell in a temporary directory (the runs a notebook makes land
there) with the kernelspec "mile" of --data-dir (the build tree's, which CMake writes),
or of a temporary one for MILE when none is given. Fails when a cell fails, when a
cell did not run, or when an output type the notebook's metadata lists under
mile.expect_outputs (e.g. image/png) is missing."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernelspec  # noqa: E402

kernelspec.require_jupyter(nbconvert=True)
args = argparse.ArgumentParser()
args.add_argument("mile")
args.add_argument("notebook")
args.add_argument("--jupyter", default="/usr/bin/jupyter")
args.add_argument("--data-dir")
args = args.parse_args()
notebook, jupyter = os.path.abspath(args.notebook), args.jupyter
if not os.access(jupyter, os.X_OK):
    sys.exit("FAIL: %s not found: %s" % (jupyter, kernelspec.MISSING))

spec = kernelspec.make_kernelspec(args.mile)  # also a private runtime dir
if args.data_dir:
    if not os.path.isfile(os.path.join(args.data_dir, "kernels", "mile", "kernel.json")):
        sys.exit("FAIL: no kernels/mile/kernel.json in %s" % args.data_dir)
    os.environ["JUPYTER_PATH"] = os.path.abspath(args.data_dir)
name = os.path.basename(notebook)
with tempfile.TemporaryDirectory(prefix="mile-notebook-") as work:
    shutil.copy(notebook, work)
    t0 = time.time()
    p = subprocess.run([jupyter, "nbconvert", "--to", "notebook", "--execute",
                        "--ExecutePreprocessor.kernel_name=mile", "--ExecutePreprocessor.timeout=300",
                        "--output", "executed-" + name, name], cwd=work, capture_output=True, text=True)
    seconds = time.time() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr[-6000:])
        sys.exit("FAIL: %s did not execute (nbconvert exit status %d)" % (name, p.returncode))
    with open(os.path.join(work, "executed-" + name)) as f:
        nb = json.load(f)

problems, found = [], set()
code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
for i, cell in enumerate(code_cells, 1):
    if cell.get("execution_count") is None:
        problems.append("code cell %d did not run" % i)
    for out in cell.get("outputs", []):
        if out["output_type"] == "error":
            problems.append("code cell %d: %s: %s" % (i, out.get("ename"), out.get("evalue")))
        found.update(out.get("data", {}).keys())
for mime in nb["metadata"].get("mile", {}).get("expect_outputs", []):
    if mime not in found:
        problems.append("no %s output (metadata mile.expect_outputs)" % mime)
for line in problems:
    print("FAIL: %s: %s" % (name, line))
print("%s: %d code cells, outputs %s, %.1f s" % (name, len(code_cells), ", ".join(sorted(found)), seconds))
sys.exit(1 if problems else 0)
