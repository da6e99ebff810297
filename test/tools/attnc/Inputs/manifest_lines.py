"""Prints a manifest.json one fact per line, for FileCheck.

    format_version 2
    kernel NAME
      KEY: VALUE            (kernel fields other than args and scratch, JSON)
      arg DIR NAME ROLE DTYPE SHAPE
      scratch NAME DTYPE SHAPE
"""
import json
import sys


def dumps(value):
    return json.dumps(value, sort_keys=True)


manifest = json.load(sys.stdin)
for key in sorted(manifest):
    if key != "kernels":
        print(key, dumps(manifest[key]))
for kernel in manifest["kernels"]:
    print("kernel", kernel["name"])
    for key in sorted(kernel):
        if key not in ("name", "args", "scratch"):
            print(f"  {key}: {dumps(kernel[key])}")
    for a in kernel["args"]:
        print("  arg", a["dir"], a["name"], a["role"], a["dtype"], dumps(a["shape"]))
    for s in kernel.get("scratch", []):
        print("  scratch", s["name"], s["dtype"], dumps(s["shape"]))
