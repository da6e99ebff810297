"""Peak memory of a compiled prefill must not grow with the key length beyond its inputs/outputs.

Runs the same kernel (1 x 8 heads (Hkv = 8), D = 128, f16, causal, 64 queries) through attn-run
at Lk = 4096 and Lk = 65536, each in a fresh subprocess, and reads that child's own peak RSS with
os.wait4. The kernel's workspace is fixed-size, so the growth of peak RSS between the two runs
may exceed the growth of input+output bytes by at most SLACK.

Two variants: inputs from .npy files (what users do; this also catches a client that holds extra
copies of its inputs while loading them) and `attn-run --random` inputs made in place (no file
loading, so only the runtime and the kernel are measured).
"""
import subprocess
import sys

import numpy as np

from harness import KernelSpec, manifest_kernel, save_npy
from reference import Mask, attention

SPEC = KernelSpec("f16", 8, 8, 128, Mask(causal=True), tag="mem")
LQ = 64
SLACK = 16 << 20


# Runs argv[1:] as a child of this small, fresh interpreter and prints the child's ru_maxrss
# (KiB) and exit code. Linux carries the pre-exec RSS high-water mark of the forked image into
# the child's ru_maxrss, so the child must not be forked from the test process, which holds the
# inputs in memory.
_WRAPPER = """import os, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
print(ru.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def peak_rss(cmd):
    """Runs cmd; returns (returncode, peak RSS in bytes of that process alone, stderr)."""
    r = subprocess.run([sys.executable, "-S", "-c", _WRAPPER, *cmd], capture_output=True,
                       text=True)
    if r.returncode != 0 or len(r.stdout.split()) != 2:
        return r.returncode or 1, 0, r.stderr
    rss_kib, rc = (int(x) for x in r.stdout.split())
    return rc, rss_kib * 1024, r.stderr


def measure(kdir, attn_run, tmp_path, lk, rng):
    man = manifest_kernel(kdir, SPEC.name)
    names = {a["role"]: a["name"] for a in man["args"]}
    q = rng.standard_normal((1, LQ, SPEC.hq, SPEC.d), dtype=np.float32).astype(np.float16)
    k = rng.standard_normal((1, lk, SPEC.hkv, SPEC.d), dtype=np.float32).astype(np.float16)
    v = rng.standard_normal((1, lk, SPEC.hkv, SPEC.d), dtype=np.float32).astype(np.float16)
    cmd = [str(attn_run), str(kdir), "--kernel", SPEC.name, "--threads", "2"]
    for role, arr in [("query", q), ("key", k), ("value", v)]:
        path = tmp_path / f"{role}_{lk}.npy"
        save_npy(path, arr)
        cmd += ["--in", f"{names[role]}={path}"]
    out = tmp_path / f"o_{lk}.npy"
    cmd += ["--out", f"{names['output']}={out}"]
    rc, rss, err = peak_rss(cmd)
    assert rc == 0, f"attn-run failed rc={rc}: {' '.join(cmd)}\n{err[-3000:]}"
    io = q.nbytes * 2 + k.nbytes + v.nbytes
    return rss, io, (q, k, v, np.load(out))


def check_growth(what, small, big):
    """small/big: (peak RSS, input+output bytes); asserts RSS growth beyond I/O growth <= SLACK."""
    (rss_s, io_s), (rss_b, io_b) = small, big
    mib = 1 / (1 << 20)
    extra = (rss_b - rss_s) - (io_b - io_s)
    print(f"\n[{what}]"
          f"\nLk=4096 : peak RSS {rss_s * mib:8.1f} MiB, inputs+outputs {io_s * mib:7.1f} MiB"
          f"\nLk=65536: peak RSS {rss_b * mib:8.1f} MiB, inputs+outputs {io_b * mib:7.1f} MiB"
          f"\nRSS growth beyond I/O growth: {extra * mib:.1f} MiB (bound {SLACK * mib:.0f} MiB)")
    assert extra <= SLACK, (
        f"[{what}] peak RSS grew by {(rss_b - rss_s) * mib:.1f} MiB from Lk=4096 to 65536 while "
        f"I/O grew by {(io_b - io_s) * mib:.1f} MiB: {extra * mib:.1f} MiB beyond the "
        f"{SLACK * mib:.0f} MiB bound")


def test_peak_rss_random_inputs(kernel_cache, attn_run):
    """Inputs made by attn-run itself: measures runtime + kernel only."""
    kdir = kernel_cache.dir_for(SPEC)
    res = {}
    for lk in (4096, 65536):
        cmd = [str(attn_run), str(kdir), "--kernel", SPEC.name, "--threads", "2", "--random", "1",
               "--size", "batch=1", "--size", f"seqlen_q={LQ}", "--size", f"seqlen_k={lk}"]
        rc, rss, err = peak_rss(cmd)
        assert rc == 0, f"attn-run failed rc={rc}: {' '.join(cmd)}\n{err[-3000:]}"
        res[lk] = (rss, 2 * (LQ * SPEC.hq + lk * SPEC.hkv) * SPEC.d * 2)
    check_growth("random inputs: runtime + kernel", res[4096], res[65536])


def test_peak_rss_independent_of_lk(kernel_cache, attn_run, tmp_path, rng_seed):
    kdir = kernel_cache.dir_for(SPEC)
    rng = np.random.default_rng(rng_seed)
    rss_s, io_s, (q, k, v, o) = measure(kdir, attn_run, tmp_path, 4096, rng)
    # the small run's output is also checked, so we are not measuring a kernel that does nothing
    o_ref, _ = attention(q, k, v, mask=SPEC.mask)
    rel = np.abs(o.astype(np.float64) - o_ref).max() / np.abs(o_ref).max()
    assert rel <= 1e-2, f"Lk=4096 output wrong: rel err {rel:.3g} (seed={rng_seed})"
    rss_b, io_b, _ = measure(kdir, attn_run, tmp_path, 65536, rng)
    check_growth("inputs from .npy files", (rss_s, io_s), (rss_b, io_b))
