"""Runs a command, passes its stdout and stderr through and exits 0 iff its exit code is N.
Usage: exit_code.py N COMMAND [ARGS...]"""
import subprocess
import sys

want = int(sys.argv[1])
r = subprocess.run(sys.argv[2:])
if r.returncode != want:
    print(f"exit_code.py: exit code {r.returncode}, expected {want}", file=sys.stderr)
    sys.exit(1)
