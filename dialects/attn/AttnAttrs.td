//===- AttnAttrs.td - attn dialect attributes --------------*- tablegen -*-===//

#ifndef ATTN_ATTRS_TD
#define ATTN_ATTRS_TD

include "attn/AttnDialect.td"
include "attn/AttnEnums.td"
include "mlir/IR/AttrTypeBase.td"

def Attn_MaskAttr : AttrDef<Attn_Dialect, "Mask"> {
  let mnemonic = "mask";
  let summary = "Which keys each query may see";
  let description = [{
    A structured mask, applied per sequence. Positions are aligned
    bottom-right by default (query `i` of `Lq` against `Lk` keys sits at
    `i + Lk - Lq`), or top-left (`i`) with `top_left`.

    - `causal`: key `j` visible when `j <= pos`.
    - `window = w`: also `j >= pos - w` (implies the causal upper edge).
    - `sinks = s`: keys `j < s` stay visible below the window (needs
      `window`).

    ```mlir
    #attn.mask<none>
    #attn.mask<causal>
    #attn.mask<causal, top_left>
    #attn.mask<window = 4096, sinks = 4>
    ```

    Lowering turns the mask into a *block* predicate (which KV tiles run
    at all) and an *element* predicate (applied only on partial tiles).
  }];
  let parameters = (ins "bool":$causal, "int64_t":$window, "int64_t":$sinks,
                        "bool":$topLeft);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// True when keys after the query position are hidden.
    bool hasUpperBound() const { return getCausal() || hasWindow(); }
    bool hasWindow() const { return getWindow() >= 0; }
    bool isNone() const { return !hasUpperBound(); }
  }];
}

def Attn_TargetAttr : AttrDef<Attn_Dialect, "Target"> {
  let mnemonic = "target";
  let summary = "The memory tiers of the machine a module is planned for";
  let description = [{
    What the memory planner (issue 6) plans against: the tiers, their
    capacities in bytes and their bandwidths in bytes per second, and the
    device's compute rate.

    - `sm_count`: streaming multiprocessors.
    - `tensor_flops`: peak dense f16/bf16 tensor-core FLOP/s, for the cost
      model's compute time (`flops / tensor_flops`, against `bytes /
      hbm_bandwidth`).
    - `smem_per_block`, `smem_per_sm`: shared memory one block may use (the
      opt-in maximum) and one SM holds.
    - `hbm_bytes`, `hbm_bandwidth`: device memory.
    - `host_bytes`, `link_bandwidth`: host memory and the link to it.

    A named preset stands for its figures and a target equal to a preset
    prints as its name:

    ```mlir
    #attn.target<"h100-80gb">
    #attn.target<"a100-80gb">
    #attn.target<"h200">
    #attn.target<"host">
    #attn.target<sm_count = 132, tensor_flops = 989400000000000,
                 smem_per_block = 232448, smem_per_sm = 233472,
                 hbm_bytes = 80000000000, hbm_bandwidth = 3350000000000,
                 host_bytes = 274877906944, link_bandwidth = 64000000000>
    ```

    Every size, bandwidth and rate is positive and `smem_per_block <=
    smem_per_sm`, except that a host-only target (`"host"`: the CPU, no
    device) has `sm_count = 0` and zero for every device figure
    (`tensor_flops` included).
  }];
  let parameters = (ins "int64_t":$smCount, "int64_t":$tensorFlops,
                        "int64_t":$smemPerBlock, "int64_t":$smemPerSm,
                        "int64_t":$hbmBytes, "int64_t":$hbmBandwidth,
                        "int64_t":$hostBytes, "int64_t":$linkBandwidth);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The preset `name` (e.g. "h100-80gb"), or null when there is none.
    static TargetAttr getPreset(::mlir::MLIRContext *context,
                                ::llvm::StringRef name);
    /// The preset names, in the order the docs list them.
    static ::llvm::SmallVector<::llvm::StringRef> getPresetNames();
    /// The name of the preset with exactly these figures, if any.
    std::optional<::llvm::StringRef> getPresetName() const;
    /// False for a host-only target (no SMs, shared memory or HBM).
    bool hasDevice() const { return getSmCount() > 0; }
  }];
}

def Attn_PlaceAttr : AttrDef<Attn_Dialect, "Place"> {
  let mnemonic = "place";
  let summary = "Where a buffer of a planned step lives: a tier and an offset";
  let description = [{
    The memory planner's placement of one buffer (`attn-plan-memory`,
    docs/memory-planning.md): the tier (`hbm` or `host`, those of
    `#attn.target`) and the byte offset in that tier's arena. A
    `!attn.kv_cache` occupies one place, its components laid out one after
    the other from the offset.

    ```mlir
    #attn.place<hbm, 4096>
    #attn.place<host, 0>
    ```

    The offset is `>= 0`; alignment, capacity and overlap are the plan
    verifier's business (`attn-verify-plan`), not the attribute's.
  }];
  let parameters = (ins EnumParameter<Attn_MemoryTier>:$tier,
                        "int64_t":$offset);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
}

#endif // ATTN_ATTRS_TD
