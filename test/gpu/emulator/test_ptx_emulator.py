"""The PTX emulator's own tests (ctest gpu_emulator): instruction semantics against
independent numpy / ml_dtypes results, the fragment layouts of ldmatrix and mma.sync through a
16x8x16 product, reconvergence, and the launches it must refuse as a device would fail them.
Each hand-written kernel is also assembled by ptxas for sm_80 when the CUDA toolkit is there,
so the emulator is tested on PTX a device accepts.

    python -m pytest test/gpu/emulator/test_ptx_emulator.py
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ptx_emulator import EmulationError, GlobalMemory, launch, parse_module  # noqa: E402

HEADER = ".version 8.0\n.target sm_80\n.address_size 64\n"
PTXAS = shutil.which("ptxas") or (
    "/usr/local/cuda/bin/ptxas" if Path("/usr/local/cuda/bin/ptxas").exists() else None)


def run(body: str, entry: str, buffers, tmp_path, scalars=(), block=(32, 1, 1)):
    """Runs `entry` of HEADER + body in one block with one u64 pointer parameter per buffer
    (written back in place), then one u32 parameter per scalar; with ptxas, assembles it
    first."""
    ptx = HEADER + body
    if PTXAS:
        src = tmp_path / f"{entry}.ptx"
        src.write_text(ptx)
        r = subprocess.run([PTXAS, "-arch=sm_80", str(src), "-o", str(tmp_path / "x.cubin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"ptxas rejects the test's PTX:\n{r.stderr}"
    bases = [0x100000 * (i + 1) for i in range(len(buffers))]
    memory = GlobalMemory([(b, a.view(np.uint8).reshape(-1)) for b, a in zip(bases, buffers)])
    params = [struct.pack("<Q", b) for b in bases] + [struct.pack("<I", x) for x in scalars]
    return launch(parse_module(ptx)[entry], (1, 1, 1), block, 0, params, memory)


def lanes_i32(rng, lo, hi, n=32):
    return rng.integers(lo, hi, n, dtype=np.int64).astype(np.int32)


SHFL = """
.visible .entry shfl(.param .u64 out)
{
  .reg .b32 %r<8>;
  .reg .b64 %rd<4>;
  ld.param.u64 %rd1, [out];
  mov.u32 %r1, %tid.x;
  mul.lo.u32 %r2, %r1, 10;
  shfl.sync.bfly.b32 %r3, %r2, 5, 31, -1;
  shfl.sync.up.b32 %r4, %r2, 3, 0, -1;
  shfl.sync.down.b32 %r5, %r2, 3, 31, -1;
  shfl.sync.idx.b32 %r6, %r2, 7, 31, -1;
  mul.wide.u32 %rd2, %r1, 16;
  add.s64 %rd3, %rd1, %rd2;
  st.global.v4.b32 [%rd3], {%r3, %r4, %r5, %r6};
  ret;
}
"""


def test_shfl_modes(tmp_path):
    out = np.zeros((64, 4), np.int32)
    run(SHFL, "shfl", [out], tmp_path, block=(64, 1, 1))
    tid = np.arange(64)
    lane, base = tid % 32, tid - tid % 32  # each warp shuffles among its own lanes
    v = tid * 10
    assert (out[:, 0] == (base + (lane ^ 5)) * 10).all()
    assert (out[:, 1] == np.where(lane >= 3, v - 30, v)).all()
    assert (out[:, 2] == np.where(lane + 3 <= 31, v + 30, v)).all()
    assert (out[:, 3] == (base + 7) * 10).all()


INTEGER = """
.visible .entry integer(.param .u64 pa, .param .u64 pb, .param .u64 pout)
{
  .reg .b16 %rs<2>;
  .reg .b32 %r<12>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [pa];
  ld.param.u64 %rd2, [pb];
  ld.param.u64 %rd3, [pout];
  mov.u32 %r1, %tid.x;
  mul.wide.u32 %rd4, %r1, 4;
  add.s64 %rd5, %rd1, %rd4;
  ld.global.b32 %r2, [%rd5];
  add.s64 %rd6, %rd2, %rd4;
  ld.global.b32 %r3, [%rd6];
  div.s32 %r4, %r2, %r3;
  rem.s32 %r5, %r2, %r3;
  shr.s32 %r6, %r2, 3;
  cvt.s8.s32 %rs1, %r2;
  cvt.s32.s16 %r7, %rs1;
  bfe.u32 %r8, %r2, 4, 8;
  prmt.b32 %r9, %r2, %r3, 0x51C0;
  mul.wide.s32 %rd7, %r2, %r3;
  mul.wide.u32 %rd8, %r1, 32;
  add.s64 %rd9, %rd3, %rd8;
  st.global.v4.b32 [%rd9], {%r4, %r5, %r6, %r7};
  st.global.v2.b32 [%rd9+16], {%r8, %r9};
  st.global.b64 [%rd9+24], %rd7;
  ret;
}
"""


def test_integer_semantics(tmp_path):
    rng = np.random.default_rng()
    a = lanes_i32(rng, -2**31, 2**31)
    b = lanes_i32(rng, -1000, 1000)
    b[b == 0] = 7
    out = np.zeros((32, 8), np.int32)
    run(INTEGER, "integer", [a, b, out], tmp_path)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    q = np.trunc(a64 / b64).astype(np.int64)  # C division: toward zero
    assert (out[:, 0] == q).all()
    assert (out[:, 1] == a64 - q * b64).all()  # the dividend's sign
    assert (out[:, 2] == a64 >> 3).all()
    assert (out[:, 3] == a.astype(np.int8)).all()  # low byte, sign-extended
    assert (out[:, 4] == (a.view(np.uint32) >> 4) & 0xFF).all()
    ab, bb = a.view(np.uint8).reshape(32, 4), b.view(np.uint8).reshape(32, 4)
    sign = np.where(bb[:, 0] >= 128, 0xFF, 0).astype(np.uint8)  # selector C: b0's sign
    expect = np.stack([ab[:, 0], sign, ab[:, 1], bb[:, 1]], axis=1).copy().view(np.int32)[:, 0]
    assert (out[:, 5] == expect).all()
    assert (out[:, 6:8].copy().view(np.int64)[:, 0] == a64 * b64).all()


MUL_HI = """
.visible .entry mul_hi(.param .u64 pa, .param .u64 pb, .param .u64 pout)
{
  .reg .b32 %r<2>;
  .reg .b64 %rd<14>;
  ld.param.u64 %rd1, [pa];
  ld.param.u64 %rd2, [pb];
  ld.param.u64 %rd3, [pout];
  mov.u32 %r1, %tid.x;
  mul.wide.u32 %rd4, %r1, 8;
  add.s64 %rd5, %rd1, %rd4;
  ld.global.u64 %rd6, [%rd5];
  add.s64 %rd7, %rd2, %rd4;
  ld.global.u64 %rd8, [%rd7];
  mul.hi.u64 %rd9, %rd6, %rd8;
  mul.hi.s64 %rd10, %rd6, %rd8;
  mul.wide.u32 %rd11, %r1, 16;
  add.s64 %rd12, %rd3, %rd11;
  st.global.v2.u64 [%rd12], {%rd9, %rd10};
  ret;
}
"""


def test_mul_hi_64(tmp_path):
    """The high half of 64-bit products (LLVM divides by a constant with it)."""
    rng = np.random.default_rng()
    a = rng.integers(0, 2**64, 32, dtype=np.uint64)
    b = rng.integers(0, 2**64, 32, dtype=np.uint64)
    a[:3], b[:3] = [0, 2**64 - 1, 2**63], [5, 2**64 - 1, 2**63 + 1]
    out = np.zeros((32, 2), np.uint64)
    run(MUL_HI, "mul_hi", [a, b, out], tmp_path)
    for i in range(32):
        assert int(out[i, 0]) == (int(a[i]) * int(b[i])) >> 64
        sa, sb = int(a[i].astype(np.int64)), int(b[i].astype(np.int64))
        assert int(out[i, 1].astype(np.int64)) == (sa * sb) >> 64


FLOATS = """
.visible .entry floats(.param .u64 px, .param .u64 py, .param .u64 pout)
{
  .reg .pred %p<2>;
  .reg .b32 %r<16>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [px];
  ld.param.u64 %rd2, [py];
  ld.param.u64 %rd3, [pout];
  mov.u32 %r1, %tid.x;
  mul.wide.u32 %rd4, %r1, 4;
  add.s64 %rd5, %rd1, %rd4;
  ld.global.f32 %r2, [%rd5];
  add.s64 %rd6, %rd2, %rd4;
  ld.global.f32 %r3, [%rd6];
  cvt.rn.bf16x2.f32 %r4, %r2, %r3;
  cvt.rn.f16x2.f32 %r5, %r2, %r3;
  max.NaN.f32 %r6, %r2, %r3;
  max.f32 %r7, %r2, %r3;
  cvt.rzi.s32.f32 %r8, %r2;
  cvt.rni.s32.f32 %r9, %r2;
  setp.ltu.f32 %p1, %r2, %r3;
  selp.b32 %r10, 1, 0, %p1;
  fma.rn.f32 %r11, %r2, %r3, %r2;
  mul.wide.u32 %rd8, %r1, 32;
  add.s64 %rd9, %rd3, %rd8;
  st.global.v4.b32 [%rd9], {%r4, %r5, %r6, %r7};
  st.global.v4.b32 [%rd9+16], {%r8, %r9, %r10, %r11};
  ret;
}
"""


def test_float_conversions_and_nan(tmp_path):
    rng = np.random.default_rng()
    x = (rng.standard_normal(32) * 300).astype(np.float32)
    y = (rng.standard_normal(32) * 3).astype(np.float32)
    x[0], y[1] = np.nan, np.nan
    x[2] = np.float32(1.0 + 2**-8)  # a bf16 tie: rounds to even (1.0)
    x[3] = np.float32(2.5)  # rni: to even
    out = np.zeros((32, 8), np.uint32)
    run(FLOATS, "floats", [x, y, out], tmp_path)
    # bf16x2 / f16x2: the first source in the upper half, rounded to nearest even.
    bf = lambda v: v.astype(ml_dtypes.bfloat16).view(np.uint16).astype(np.uint32)  # noqa: E731
    hf = lambda v: v.astype(np.float16).view(np.uint16).astype(np.uint32)  # noqa: E731
    ok = ~np.isnan(x) & ~np.isnan(y)
    assert (out[ok, 0] == (bf(x) << 16 | bf(y))[ok]).all()
    assert (out[2, 0] >> 16) == 0x3F80
    assert (out[ok, 1] == (hf(x) << 16 | hf(y))[ok]).all()
    f = out.view(np.float32)
    assert np.isnan(f[0, 2]) and np.isnan(f[1, 2])  # max.NaN propagates
    assert f[0, 3] == y[0] and f[1, 3] == x[1]  # max returns the number
    assert (f[ok, 2] == np.maximum(x, y)[ok]).all()
    i = out.view(np.int32)
    assert (i[1:, 4] == np.trunc(x[1:])).all() and i[0, 4] == 0  # NaN -> 0
    assert (i[1:, 5] == np.rint(x[1:])).all() and i[3, 5] == 2
    assert (i[:, 6] == ((x < y) | np.isnan(x) | np.isnan(y))).all()
    # fma: one rounding of the exact x * y + x (f64 holds the product exactly).
    fused = (x.astype(np.float64) * y + x).astype(np.float32)
    assert (f[ok, 7] == fused[ok]).all()


GEMM = """
.visible .entry gemm(.param .u64 pa, .param .u64 pbt, .param .u64 pb, .param .u64 pd)
{
  .reg .pred %p<2>;
  .reg .b32 %r<40>;
  .reg .b64 %rd<30>;
  .shared .align 16 .b8 tiles[1024];
  ld.param.u64 %rd1, [pa];
  ld.param.u64 %rd2, [pbt];
  ld.param.u64 %rd3, [pb];
  ld.param.u64 %rd4, [pd];
  mov.u32 %r1, %tid.x;
  mov.b64 %rd5, tiles;
  // A [16][16] f16 to shared 0..511, Bt [8][16] to 512..767, B [16][8] to 768..1023.
  mul.wide.u32 %rd6, %r1, 16;
  add.s64 %rd7, %rd1, %rd6;
  ld.global.v4.b32 {%r2, %r3, %r4, %r5}, [%rd7];
  add.s64 %rd8, %rd5, %rd6;
  st.shared.v4.b32 [%rd8], {%r2, %r3, %r4, %r5};
  setp.lt.u32 %p1, %r1, 16;
  @!%p1 bra $L_copied;
  add.s64 %rd9, %rd2, %rd6;
  ld.global.v4.b32 {%r2, %r3, %r4, %r5}, [%rd9];
  st.shared.v4.b32 [%rd8+512], {%r2, %r3, %r4, %r5};
  add.s64 %rd10, %rd3, %rd6;
  ld.global.v4.b32 {%r2, %r3, %r4, %r5}, [%rd10];
  st.shared.v4.b32 [%rd8+768], {%r2, %r3, %r4, %r5};
$L_copied:
  bar.sync 0;
  // A: lane l addresses row l % 16, column 8 * (l / 16).
  and.b32 %r6, %r1, 15;
  shr.u32 %r7, %r1, 4;
  mul.wide.u32 %rd11, %r6, 32;
  mul.wide.u32 %rd12, %r7, 16;
  add.s64 %rd13, %rd5, %rd11;
  add.s64 %rd14, %rd13, %rd12;
  ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r8, %r9, %r10, %r11}, [%rd14];
  // Bt (n-major): lane l < 16 addresses row l % 8, column 8 * (l / 8).
  and.b32 %r12, %r1, 7;
  shr.u32 %r13, %r1, 3;
  and.b32 %r14, %r13, 1;
  mul.wide.u32 %rd15, %r12, 32;
  mul.wide.u32 %rd16, %r14, 16;
  add.s64 %rd17, %rd5, %rd15;
  add.s64 %rd18, %rd17, %rd16;
  ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%r15, %r16}, [%rd18+512];
  // B (k-major), transposed: lane l < 16 addresses row (key) l.
  mul.wide.u32 %rd19, %r6, 16;
  add.s64 %rd20, %rd5, %rd19;
  ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%r17, %r18}, [%rd20+768];
  mov.b32 %r19, 0f00000000;
  mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%r20, %r21, %r22, %r23},
      {%r8, %r9, %r10, %r11}, {%r15, %r16}, {%r19, %r19, %r19, %r19};
  mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%r24, %r25, %r26, %r27},
      {%r8, %r9, %r10, %r11}, {%r17, %r18}, {%r19, %r19, %r19, %r19};
  // D [2][16][8] f32: row g and g + 8, columns 2 (l % 4) and + 1.
  shr.u32 %r28, %r1, 2;
  and.b32 %r29, %r1, 3;
  shl.b32 %r30, %r29, 1;
  mad.lo.s32 %r31, %r28, 8, %r30;
  mul.wide.u32 %rd21, %r31, 4;
  add.s64 %rd22, %rd4, %rd21;
  st.global.v2.f32 [%rd22], {%r20, %r21};
  st.global.v2.f32 [%rd22+256], {%r22, %r23};
  st.global.v2.f32 [%rd22+512], {%r24, %r25};
  st.global.v2.f32 [%rd22+768], {%r26, %r27};
  ret;
}
"""


def test_ldmatrix_and_mma_compute_a_product(tmp_path):
    """The two ways the kernels feed B (K through ldmatrix, V through ldmatrix.trans) each
    give A @ B: the fragment layouts of ldmatrix and mma.sync agree with the ISA's."""
    rng = np.random.default_rng()
    a = rng.standard_normal((16, 16)).astype(np.float16)
    b = rng.standard_normal((16, 8)).astype(np.float16)
    d = np.full((2, 16, 8), np.nan, np.float32)
    run(GEMM, "gemm", [a, np.ascontiguousarray(b.T), b, d], tmp_path)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.allclose(d[0], ref, rtol=1e-6, atol=1e-6)
    assert np.allclose(d[1], ref, rtol=1e-6, atol=1e-6)


RECONVERGE = """
.visible .entry reconverge(.param .u64 out)
{
  .reg .pred %p<2>;
  .reg .b32 %r<6>;
  .reg .b64 %rd<4>;
  ld.param.u64 %rd1, [out];
  mov.u32 %r1, %tid.x;
  and.b32 %r2, %r1, 1;
  setp.eq.u32 %p1, %r2, 0;
  @%p1 bra $L_even;
  bra.uni $L_odd;
$L_join:
  shfl.sync.bfly.b32 %r4, %r3, 1, 31, -1;
  mul.wide.u32 %rd2, %r1, 4;
  add.s64 %rd3, %rd1, %rd2;
  st.global.b32 [%rd3], %r4;
  ret;
$L_even:
  mov.u32 %r3, 1;
  bra.uni $L_join;
$L_odd:
  mov.u32 %r3, 2;
  bra.uni $L_join;
}
"""


def test_lanes_reconverge_at_the_post_dominator(tmp_path):
    """The join block lies before both sides in the PTX (as LLVM lays some out): the lanes
    still meet there before the shuffle."""
    out = np.zeros(32, np.int32)
    run(RECONVERGE, "reconverge", [out], tmp_path)
    assert (out == np.where(np.arange(32) % 2 == 0, 2, 1)).all()


ASYNC = """
.visible .entry async_copy(.param .u64 src, .param .u64 out, .param .u32 wait)
{
  .reg .pred %p<2>;
  .reg .b32 %r<8>;
  .reg .b64 %rd<8>;
  .shared .align 16 .b8 buf[512];
  ld.param.u64 %rd1, [src];
  ld.param.u64 %rd2, [out];
  ld.param.u32 %r1, [wait];
  mov.u32 %r2, %tid.x;
  mul.wide.u32 %rd3, %r2, 16;
  add.s64 %rd4, %rd1, %rd3;
  mov.b64 %rd5, buf;
  add.s64 %rd6, %rd5, %rd3;
  cp.async.cg.shared.global [%rd6], [%rd4], 16, 16;
  cp.async.commit_group;
  setp.ne.u32 %p1, %r1, 0;
  @!%p1 bra $L_read;
  cp.async.wait_group 0;
$L_read:
  bar.sync 0;
  ld.shared.v4.b32 {%r3, %r4, %r5, %r6}, [%rd6];
  add.s64 %rd7, %rd2, %rd3;
  st.global.v4.b32 [%rd7], {%r3, %r4, %r5, %r6};
  cp.async.wait_all;
  ret;
}
"""


def run_async(wait: int, tmp_path):
    src = np.arange(128, dtype=np.int32)
    out = np.zeros(128, np.int32)
    run(ASYNC, "async_copy", [src, out], tmp_path, scalars=[wait])
    return src, out


def test_cp_async_lands_at_its_wait(tmp_path):
    src, out = run_async(1, tmp_path)
    assert (out == src).all()
    # Without the wait the shared bytes are still the launch's 0xFF fill.
    _, stale = run_async(0, tmp_path)
    assert (stale == -1).all()


FAULTS = """
.visible .entry faults(.param .u64 buf, .param .u32 mode)
{
  .reg .pred %p<4>;
  .reg .b32 %r<8>;
  .reg .b64 %rd<6>;
  ld.param.u64 %rd1, [buf];
  ld.param.u32 %r1, [mode];
  mov.u32 %r2, %tid.x;
  mul.wide.u32 %rd2, %r2, 4;
  add.s64 %rd3, %rd1, %rd2;
  setp.eq.u32 %p1, %r1, 1;
  @%p1 bra $L_oob;
  setp.eq.u32 %p2, %r1, 2;
  @%p2 bra $L_misaligned;
  setp.eq.u32 %p3, %r1, 3;
  @%p3 bra $L_divergent_shfl;
  and.b32 %r3, %r2, 32;
  setp.eq.u32 %p3, %r3, 0;
  @%p3 bra $L_end;
  bar.sync 0;
  bra.uni $L_end;
$L_oob:
  ld.global.b32 %r4, [%rd3+64];
  st.global.b32 [%rd3], %r4;
  bra.uni $L_end;
$L_misaligned:
  ld.global.v4.b32 {%r4, %r5, %r6, %r7}, [%rd1+4];
  bra.uni $L_end;
$L_divergent_shfl:
  and.b32 %r3, %r2, 1;
  setp.eq.u32 %p3, %r3, 0;
  @%p3 bra $L_end;
  shfl.sync.bfly.b32 %r4, %r2, 1, 31, -1;
$L_end:
  ret;
}
"""


@pytest.mark.parametrize("mode,message", [
    (1, "illegal address"), (2, "misaligned address"), (3, "reached by part of a warp"),
    (4, "reached by part of a block")])
def test_faults_a_device_would_fail(mode, message, tmp_path):
    buf = np.zeros(64, np.int32)  # 256 bytes: lane 63's load at +64 + 252 is past the end
    with pytest.raises(EmulationError, match=message):
        run(FAULTS, "faults", [buf], tmp_path, scalars=[mode], block=(64, 1, 1))


def test_unsupported_instructions_are_named():
    ptx = HEADER + """
.visible .entry odd(.param .u64 buf)
{
  .reg .b32 %r<3>;
  mov.u32 %r1, %tid.x;
  popc.b32 %r2, %r1;
  ret;
}
"""
    memory = GlobalMemory([(0x100000, np.zeros(16, np.uint8))])
    with pytest.raises(EmulationError, match=r"PTX line \d+ .*unsupported instruction popc"):
        launch(parse_module(ptx)["odd"], (1, 1, 1), (32, 1, 1), 0,
               [struct.pack("<Q", 0x100000)], memory)
