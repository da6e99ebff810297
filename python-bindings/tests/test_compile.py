"""attnc.compile / attnc.emit: sources as text or paths, the levels, options, and the errors
(diagnostics with locations in the exception, unknown options, targets)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import attnc
from gil import stamps_during
from reference import attention

KERNEL = """\
func.func @sdpa(%q: tensor<?x?x4x64xf32>, %k: tensor<?x?x2x64xf32>,
                %v: tensor<?x?x2x64xf32>) -> tensor<?x?x4x64xf32> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x4x64xf32>, tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>)
      -> tensor<?x?x4x64xf32>
  return %o : tensor<?x?x4x64xf32>
}
"""

# Line 3: 5 query heads over 2 KV heads (not a multiple) is a verifier error.
BAD_HEADS = KERNEL.replace("tensor<?x?x4x64xf32>", "tensor<?x?x5x64xf32>")


def test_compile_text_path_and_output_dir(tmp_path):
    src = tmp_path / "my-kernels.mlir"
    src.write_text(KERNEL)
    out = tmp_path / "out"
    m = attnc.compile(src, output_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["libmy-kernels.so", "manifest.json",
                                                      "my-kernels.h"]
    assert m.path == out and m.kernels == ["sdpa"] and m.diagnostics == []
    assert json.loads((out / "manifest.json").read_text()) == m.manifest
    # a str that names a file is a path too; text is text (artifacts named "kernels")
    assert attnc.compile(str(src)).kernels == ["sdpa"]
    attnc.compile(KERNEL, output_dir=tmp_path / "text")
    assert sorted(p.name for p in (tmp_path / "text").iterdir()) == [
        "kernels.h", "libkernels.so", "manifest.json"]
    # the artifacts of the command line open the same way
    assert attnc.Module(out).sdpa.kind == "attention"


def test_recompiling_into_one_directory_gives_the_new_kernels(tmp_path, rng_seed):
    """dlopen returns an already loaded library of the same path: compile() must not."""
    rng = np.random.default_rng(rng_seed)
    q = rng.standard_normal((1, 3, 4, 64)).astype(np.float32)
    k = rng.standard_normal((1, 9, 2, 64)).astype(np.float32)
    first = attnc.compile(KERNEL, output_dir=tmp_path)
    second = attnc.compile(KERNEL.replace("{mask = #attn.mask<causal>}", "{scale = 2.0 : f32}"),
                           output_dir=tmp_path)
    assert first.sdpa.attention.scale != second.sdpa.attention.scale == 2.0
    o1, o2 = first.sdpa(q, k, k), second.sdpa(q, k, k)
    o_ref, _ = attention(q, k, k, scale=2.0)
    assert np.abs(o2 - o_ref).max() <= 1e-5 * np.abs(o_ref).max()
    assert np.abs(o1 - o2).max() > 0.01


def test_emit_levels():
    assert "attn.attention" in attnc.emit(KERNEL, "attn")
    manifest = json.loads(attnc.emit(KERNEL, "manifest"))
    assert manifest["kernels"][0]["name"] == "sdpa"
    tiles = attnc.emit(KERNEL, "tiles", block_kv=16)
    assert "attn.attention" not in tiles and "block_kv = 16 : i64" in tiles
    assert "block_kv = 32 : i64" in attnc.emit(KERNEL, "tiles")
    assert "llvm.func" in attnc.emit(KERNEL, "llvm")
    assert "define " in attnc.emit(KERNEL, "llvm-ir")
    with pytest.raises(ValueError, match="unknown emit kind 'asm'"):
        attnc.emit(KERNEL, "asm")
    with pytest.raises(ValueError, match="use compile"):
        attnc.emit(KERNEL, "artifacts")


def test_options_reach_the_compiler(rng_seed):
    m = attnc.compile(KERNEL, block_kv=16, vector_width=8, qk_form="dot", count_tiles=True)
    at = m.sdpa.attention
    assert (at.block_kv, at.vector_width) == (16, 8)
    assert m.sdpa.has_tile_stats
    rng = np.random.default_rng(rng_seed)
    q = rng.standard_normal((1, 5, 4, 64)).astype(np.float32)
    kv = rng.standard_normal((1, 37, 2, 64)).astype(np.float32)
    m.sdpa.reset_tile_stats()
    m.sdpa(q, kv, kv)
    # One query tile per KV head (2 work items), each over the 3 tiles of 16 of 37 keys; the
    # causal diagonal tile of each applies the element predicate.
    assert m.sdpa.tile_stats() == (6, 2, 2)
    m.sdpa.reset_tile_stats()
    assert m.sdpa.tile_stats() == (0, 0, 0)
    with pytest.raises(attnc.AttnrtError, match="compile it with attnc --count-tiles"):
        attnc.compile(KERNEL).sdpa.tile_stats()


def test_bad_source_raises_with_location():
    with pytest.raises(attnc.CompileError) as e:
        attnc.compile(BAD_HEADS)
    err = e.value
    assert err.status == 1
    first = err.diagnostics[0]
    assert (first.severity, first.file, first.line) == ("error", "<string>", 3)
    assert first.column == 8
    assert first.message == ("'attn.attention' op query heads (5) must be a multiple of "
                             "key/value heads (2) for grouped-query attention")
    # str() is what the command line prints: location, message, the line and a caret
    assert str(err).startswith(f"<string>:3:{first.column}: error: ")
    assert "attn.attention" in str(err) and "^" in str(err)
    assert str(first) == f"<string>:3:{first.column}: error: {first.message}"


def test_syntax_error_in_a_file_names_the_file(tmp_path):
    src = tmp_path / "broken.mlir"
    src.write_text(KERNEL.replace("return %o", "retrun %o"))
    with pytest.raises(attnc.CompileError, match=rf"{src}:6:\d+: error: "):
        attnc.compile(src)
    with pytest.raises(attnc.CompileError):
        attnc.emit(src, "attn")


def test_unknown_and_mistyped_options():
    with pytest.raises(TypeError, match="unexpected keyword argument 'block_size'.*block_kv"):
        attnc.compile(KERNEL, block_size=64)
    with pytest.raises(TypeError, match="'block_kv' must be int, not str"):
        attnc.compile(KERNEL, block_kv="64")
    with pytest.raises(TypeError, match="'count_tiles' must be bool"):
        attnc.emit(KERNEL, "tiles", count_tiles=1)
    with pytest.raises(attnc.CompileError, match="unknown qk-form 'sideways'"):
        attnc.compile(KERNEL, qk_form="sideways")
    with pytest.raises(TypeError, match="MLIR text"):
        attnc.compile(b"bytes")


def test_targets():
    with pytest.raises(attnc.CompileError, match="target 'sm_90' makes GPU artifacts") as e:
        attnc.compile(KERNEL, target="sm_90")
    assert e.value.diagnostics == [] and e.value.status == 1
    # The PTX itself: the GPU kernel of the same source.
    ptx = attnc.emit(KERNEL.replace("f32", "f16"), "ptx", target="sm_80")
    assert ".target sm_80" in ptx and "mma.sync.aligned.m16n8k16" in ptx
    with pytest.raises(attnc.CompileError, match="'sm_70' is older than sm_80"):
        attnc.emit(KERNEL, "ptx", target="sm_70")
    with pytest.raises(attnc.CompileError, match="unknown target 'tpu'"):
        attnc.compile(KERNEL, "tpu")
    with pytest.raises(attnc.CompileError, match="no step function to plan"):
        attnc.emit(KERNEL, "plan")


def test_compile_releases_the_gil():
    """A compilation takes a while; another thread's Python runs meanwhile."""
    t0, t1, inside = stamps_during(lambda: attnc.compile(KERNEL), 0.001)
    assert len(inside) >= 5, f"{len(inside)} stamps inside a {(t1 - t0):.2f} s compilation"


def test_package_has_stubs_and_version():
    pkg = Path(attnc.__file__).parent
    stub = (pkg / "_attnc.pyi").read_text()
    for name in ("class Module", "class Kernel", "class CachePool", "def compile(",
                 "class Diagnostic"):
        assert name in stub
    assert (pkg / "py.typed").exists()
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.exists():
        assert f'version = "{attnc.__version__}"' in pyproject.read_text()
