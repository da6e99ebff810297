//===- Passes.td - attnc lowering passes -------------------*- tablegen -*-===//

#ifndef ATTNC_CONVERSION_PASSES_TD
#define ATTNC_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnExpandKVCache : Pass<"attn-expand-kv-cache", "mlir::func::FuncOp"> {
  let summary = "Replace each !attn.kv_cache argument by its component buffers";
  let description = [{
    A `!attn.kv_cache` function argument `NAME` (its `attn.name`, else
    `cache`, `cache1`, ...) becomes the memref arguments of its components
    (docs/kv-cache.md: K and V pages, then scales and minima), named
    `NAME_<component>`, inserted where it was. Its uses read an
    `unrealized_conversion_cast` of those buffers, which the lowering of
    the cache ops looks through. The kernel ABI and manifest list the same
    buffers in the same order.
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect"];
}

def AttnCountTiles : Pass<"attn-count-tiles", "mlir::ModuleOp"> {
  let summary = "Instrument attention kernels with tile counters";
  let description = [{
    For every function holding an `attn.attention` or `attn.paged_attention`
    adds a public global `NAME__tile_stats : memref<3xi64>` and marks the
    function with `attn.tile_stats` (the symbol) and `attn.instrumented =
    ["tile_stats"]` (for the manifest). `attn-lower-to-tiles` then counts,
    with atomic adds: [0] KV tiles run, [1] tiles that applied the element
    predicate, [2] work items with rows. attnrt reads the counters after a
    run (docs/sparsity.md section 4); run this before the tile lowering.
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect"];
}

def AttnLowerToTiles : Pass<"attn-lower-to-tiles", "mlir::func::FuncOp"> {
  let summary = "Lower attention ops to the tiled online-softmax algorithm";
  let description = [{
    Rewrites every `attn.attention` into the target-neutral tile level
    (DESIGN.md section 3, level 2) on scf/arith/math/vector/memref:

    - an `scf.parallel` over (batch, KV head, query tile); all query heads
      of one KV head form the rows of a tile (GQA packing), so each K/V tile
      is loaded once for the whole group;
    - per work item a fixed-size private workspace (`memref.alloca`): Q, K
      and V tiles in f32, the score tile and the accumulator; nothing
      depends on sequence length;
    - an `scf.for` over KV tiles whose bounds are the mask's *block*
      predicate (causal upper edge, window lower edge, sink tiles), carrying
      the running row max and row sum (scores in the log2 domain, `exp2`);
    - the *element* predicate applied only on partial tiles (`scf.if`);
    - scores either as broadcast-FMAs over a transposed K tile (many rows
      per tile) or as one dot product per (row, key) (few rows, decode);
      with a dynamic query length both are emitted and each work item picks
      by its row count (`qk-form`).

    `attn.paged_attention` takes the same loops with a different tile load:
    each key's page comes from the CSR page table and its K/V chunks are
    dequantized right there (fp8 bit expansion times the head scale, int8
    times per-channel K / per-token V scales, int4 nibble unpacking with
    scale and minimum); no dequantized copy of the cache exists. Paged
    decode over a dynamic batch splits each sequence's KV tiles into
    partitions (split-KV, `max-kv-splits`, `num-kv-splits`) that write
    partial outputs and LSEs to scratch, combined by a second parallel loop
    (phase 2) with the `attn.merge` arithmetic; the function gets
    `attn.phases` and `attn.scratch`. `attn.merge` itself lowers to that
    combine loop.

    Sparsity (docs/sparsity.md): per-head masks (`head_masks`) become
    run-time mask parameters selected by the work item's KV head; a
    block-sparse mask makes the KV loop walk the item's block list (BQ and
    BK must be multiples of the kernel tile: the tile sizes become their
    gcd), skipping listed tiles that the structured mask hides entirely or
    that lie past the sequence's end, and applying the element predicate
    only to tiles that are not wholly visible (full-flagged blocks skip
    it). `attn.select_pages` lowers to the page scoring and top-k loop.

    Operands are taken as buffers (`bufferization.to_buffer`) and results
    are fresh buffers; one-shot bufferization finishes the function.
  }];
  let options = [
    Option<"blockQ", "block-q", "int64_t", /*default=*/"0",
           "Query tokens per tile (0: 64 rows / group size)">,
    Option<"blockKV", "block-kv", "int64_t", /*default=*/"32",
           "Keys per KV tile">,
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"8",
           "f32 lanes of the target's vectors (chunking of head_dim)">,
    Option<"qkForm", "qk-form", "std::string", /*default=*/"\"auto\"",
           "Q.K^T form: dot (a reduction per row and key), transposed (K "
           "staged transposed, broadcast-FMAs), or auto (transposed when "
           "more than 16 rows share a tile)">,
    Option<"maxKVSplits", "max-kv-splits", "int64_t", /*default=*/"8",
           "Split-KV for paged decode with a dynamic batch: at most this "
           "many partitions per sequence (sizes the scratch; 1 disables)">,
    Option<"numKVSplits", "num-kv-splits", "int64_t", /*default=*/"0",
           "Split-KV partitions (0: chosen per call from the batch, the KV "
           "heads, num-threads and the sequence lengths)">,
    Option<"numThreads", "num-threads", "int64_t", /*default=*/"0",
           "Threads the kernels will run on, for the split-KV choice (0: "
           "this machine's cores)">,
  ];
  let dependentDialects = [
    "mlir::arith::ArithDialect", "mlir::bufferization::BufferizationDialect",
    "mlir::math::MathDialect", "mlir::memref::MemRefDialect",
    "mlir::scf::SCFDialect", "mlir::vector::VectorDialect"
  ];
}

def AttnLowerToGPU : Pass<"attn-lower-to-gpu", "mlir::ModuleOp"> {
  let summary = "Lower attention kernels to GPU kernels (sm_80 and newer)";
  let description = [{
    Replaces each kernel function by a `gpu.module @NAME_gpu` with one
    `gpu.func @NAME` kernel (docs/gpu.md):

    - a dense `attn.attention` (f16 or bf16, head_dim 64 or 128, any
      structured mask, softcap, optional LSE) becomes the FlashAttention-2
      prefill kernel: 4 warps per (query tile of 64, query head, sequence); Q and
      double-buffered K/V tiles of 64 keys in swizzled dynamic shared
      memory through `cp.async`; both contractions on tensor cores
      (`ldmatrix`, `mma.sync` m16n8k16, f32 accumulation); online softmax in
      registers with `exp2`; the mask's block predicate as loop bounds and
      its element predicate on partial tiles only;
    - a decode `attn.paged_attention` over f16, bf16, int8 or fp8 pages
      becomes the paged decode kernel: one block per (KV head, sequence) computing all its
      query heads, 16-byte loads of K and V through the page table (int8
      and fp8 dequantized in registers), dot
      products reduced with shuffles, lane groups merged in shared memory.

    The kernels take bare global pointers, then the dynamic sizes as i32;
    the launch geometry is the `attn.launch` attribute
    (docs/gpu-artifacts.md). What has no GPU kernel yet (ragged, paged
    append, int4 caches, block-sparse and per-head masks,
    f32, other head sizes, kv_append, merge, select_pages) is an error.
  }];
  let dependentDialects = [
    "mlir::arith::ArithDialect", "mlir::gpu::GPUDialect",
    "mlir::LLVM::LLVMDialect", "mlir::NVVM::NVVMDialect",
    "mlir::math::MathDialect", "mlir::memref::MemRefDialect",
    "mlir::nvgpu::NVGPUDialect", "mlir::scf::SCFDialect",
    "mlir::vector::VectorDialect"
  ];
}

def AttnPlanTiles : Pass<"attn-plan-tiles", "mlir::ModuleOp"> {
  let summary = "Choose GPU kernel tiles that fit the target's shared memory";
  let description = [{
    The kernel level of the memory planner (docs/memory-planning.md). For
    every `attn.attention` and `attn.paged_attention` whose target (the
    `target` option, else the nearest enclosing `attn.target`) has a device,
    chooses the tile sizes and pipeline depth of its GPU kernel, in the
    FlashAttention-2 shape: a thread block per (query tile, KV head), the
    query heads sharing that KV head packed into the tile's rows (decode: all
    of them in one tile); in shared memory the Q tile (`block_q` rows x
    `head_dim`, query dtype) and, per pipeline stage, the K and V tiles
    (`block_kv` x `head_dim`, storage bytes) with, for i8/i4 caches, their
    scale (and minimum) tiles. Each stage of each buffer is 128-byte
    aligned. P stays in registers and O goes out through the Q buffer.

    Candidates: `block_q` and `block_kv` in {128, 64, 32, 16}, capped at
    FlashAttention-2's sizes for the head size and at the rows there are,
    `stages` in {3, 2, 1}; preferred in the order pipelined (stages >= 2),
    larger `block_q`, larger `block_kv`, more stages. The first whose
    buffers fit `smem_per_block`, with `occupancy` blocks fitting
    `smem_per_sm`, is recorded on the op:

    ```
    attn.tile_plan = {block_q = 128, block_kv = 64, stages = 3,
                      smem_bytes = 131072,
                      buffers = [{name = "q", bytes = 32768}, ...]}
    ```

    (`bytes` of a staged buffer counts every stage.) When none fits, the
    error names each buffer of the smallest candidate, its bytes and the
    budget. A host-only target leaves the ops alone: the CPU has no
    software-managed shared memory, and `attn-lower-to-tiles`'s options size
    its tiles. The manifest reports the plan as `tile_plan`.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"\"",
           "A target preset that overrides attn.target (h100-80gb, "
           "a100-80gb, h200, host)">,
    Option<"occupancy", "occupancy", "int64_t", /*default=*/"1",
           "Thread blocks that must fit on one SM at once">,
  ];
}

def AttnPlanMemory : Pass<"attn-plan-memory", "mlir::ModuleOp"> {
  let summary = "Place every buffer of each step function across the target's "
                "memory tiers, with prefetch and offload copies";
  let description = [{
    Plans every step function (`func.func` with `attn.step`: a straight-line
    schedule of attn kernels with static tensors, KV cache arguments
    carrying `attn.num_pages`) against the target (the `target` option,
    else the module's `attn.target`). Kernels read and write HBM; what does
    not fit there lives in host memory, prefetched before its uses by
    `attn.copy_start`/`attn.copy_done` pairs placed so the transfer overlaps
    the kernels before it, and offloaded after its last write (a KV cache
    `attn.kv_append` writes, an output). Buffers get offsets in one arena
    per tier (the arena planner: best fit over several orderings, then a
    hill climb). The cost model predicts a kernel's time as the longer of
    its FLOPs at `tensor_flops` and its bytes at `hbm_bandwidth`, a
    transfer's as its bytes at `link_bandwidth`.

    Writes the plan into the IR: `attn.place` on every argument,
    `attn.places` and `attn.seconds` on every kernel, the copies with
    `attn.transfer_seconds` and `attn.exposed_seconds`, kernels reading the
    copies, and the summary `attn.plan` (per tier capacity, peak and lower
    bound; predicted step time with the copies and without). A kernel whose
    operands alone exceed HBM is an error that names them. A host-only
    target has one tier and no copies. docs/memory-planning.md has the
    algorithm and the liveness rules.
  }];
  let options = [
    Option<"targetName", "target", "std::string", /*default=*/"\"\"",
           "A target preset that overrides attn.target (h100-80gb, "
           "a100-80gb, h200, host)">,
  ];
  let dependentDialects = ["attnc::attn::AttnDialect"];
}

def AttnVerifyPlan : Pass<"attn-verify-plan", "mlir::ModuleOp"> {
  let summary = "Check the memory plan of every step function";
  let description = [{
    For every step function (`attn.step`) of the module, checks the plan
    that `attn-plan-memory` wrote into it (docs/memory-planning.md): every
    value has exactly one place, 64-byte aligned, in a tier of the target;
    in each tier no two buffers live at the same time share a byte and no
    kernel writes bytes an unfinished copy still reads; every operand,
    result and workspace of a kernel is in the tier kernels read (`hbm` on
    a device target, else `host`), and no kernel reads a value while a copy
    writes it back; every tier's buffers end within its capacity and within
    the peak of `attn.plan`. A buffer is live from the op that starts
    writing it to the last op that reads it; a copy reads its source until
    its `attn.copy_done`, but copies run in issue order, so a later copy may
    reuse those bytes. Errors name the buffers (argument names, result
    names, op locations), their ranges, tiers and steps. A step function
    without places is an error ("run attn-plan-memory first"). The tiers
    come from the `target` option, else the `target` entry of `attn.plan`,
    else the module's `attn.target`, else the tiers of `attn.plan`. The IR
    is not changed. `attnc --verify-plan` runs the same checks.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"\"",
           "A target preset that overrides attn.target (h100-80gb, "
           "a100-80gb, h200, host)">,
  ];
}

def AttnPrintPlanReport : Pass<"attn-print-plan-report", "mlir::ModuleOp"> {
  let summary = "Print the memory plan report of every step function";
  let description = [{
    Prints what `attnc --emit=plan` prints, read only from the planned IR
    (places, copies, `attn.plan`, `attn.seconds`, `attn.transfer_seconds`,
    `attn.exposed_seconds`), to standard output: with `format=table` a
    fixed-width summary per step function (the tiers' capacity, peak, lower
    bound and their ratio; what each tier holds; each transfer with its
    bytes, issue and wait steps, transfer and exposed time; the predicted
    step time against the time without offloading), with `format=json` the
    JSON document of `plan.json`. The IR is not changed.
  }];
  let options = [
    Option<"format", "format", "std::string", /*default=*/"\"table\"",
           "table or json">,
  ];
}

def AttnCPUKernelABI : Pass<"attn-cpu-kernel-abi", "mlir::ModuleOp"> {
  let summary = "Give each bufferized kernel the host work-item ABI";
  let description = [{
    Maps the tile level onto host threads (docs/artifacts.md). For each
    kernel function `NAME`:

    - results become trailing out-parameters written in place;
    - the top-level `memref.alloc`s that are not results are the scratch
      buffers that the function's `attn.scratch` attribute lists in program
      order (`[{name, dtype, shape}, ...]`); they become trailing memref
      parameters after the out-parameters, which the caller allocates (it is
      an error when the number of allocations and entries differ);
    - the top-level `scf.parallel` loops are the kernel's phases 0..n-1, in
      order (no loop at all: one phase of one work item). An `index`
      argument `phase` and the work-item range `begin, end` follow the
      memrefs; phase `i`'s loop becomes an `scf.for` over `[begin, end)` of
      its linearized iteration space, run when `phase == i`. Code outside
      the loops is shared by all phases. When the function has an
      `attn.phases` attribute, the loop count must equal it;
    - the per-item workspace is hoisted to the function entry (one per call);
    - `NAME__count(args..., phase)` returns the number of work items of
      `phase` (0 for a phase the kernel does not have).

    Both functions get `llvm.emit_c_interface`.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect"];
}

def AttnCPUApproximateMath : Pass<"attn-cpu-approximate-math"> {
  let summary = "Vectorizable polynomial approximations of exp2 and tanh";
  let description = [{
    Rewrites `math.exp2` (through `exp`) and `math.tanh` into polynomial
    arithmetic so vector code stays vector code instead of per-lane libm
    calls.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::math::MathDialect",
                           "mlir::vector::VectorDialect"];
}

def AttnCPUEntryPoints : Pass<"attn-cpu-entry-points", "mlir::ModuleOp"> {
  let summary = "Emit the packed C entry points of every host kernel";
  let description = [{
    For each kernel `NAME` (in the LLVM dialect, after conversion) emits
    `void NAME__run(void **args, i64 phase, i64 begin, i64 end)` and
    `int64_t NAME__work_items(void **args, i64 phase)`, which unpack the
    argument array (arguments, results, then scratch buffers: one memref
    descriptor pointer each) and call the `_mlir_ciface_` functions. The
    runtime then calls every kernel the same way whatever its arity.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect"];
}

#endif // ATTNC_CONVERSION_PASSES_TD
