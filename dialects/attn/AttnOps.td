//===- AttnOps.td - attn dialect operations ----------------*- tablegen -*-===//

#ifndef ATTN_OPS_TD
#define ATTN_OPS_TD

include "attn/AttnDialect.td"
include "attn/AttnAttrs.td"
include "attn/AttnTypes.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

// Block-sparse mask operands and the per-head policy, shared by the
// attention ops (docs/sparsity.md); each op spells out their assembly.
defvar Attn_SparsityArguments = (ins
    Optional<AnyRankedTensor>:$blockOffsets,
    Optional<AnyRankedTensor>:$blockIndices,
    Optional<AnyRankedTensor>:$blockFull,
    OptionalAttr<DenseI64ArrayAttr>:$block_size,
    OptionalAttr<ArrayAttr>:$head_masks);


def Attn_AttentionOp : Attn_Op<"attention", [Pure, AttrSizedOperandSegments]> {
  let summary = "Scaled dot-product attention over a dense or ragged batch";
  let description = [{
    Computes `softmax(mask(softcap(scale * Q K^T))) V` per query head, with
    query head `h` reading KV head `h / (Hq / Hkv)` (GQA; MQA is `Hkv = 1`).

    Dense form: `query` is `[batch, seq_q, q_heads, head_dim]`, `key` and
    `value` are `[batch, seq_k, kv_heads, head_dim]`. Ragged form (with
    `cu_seqlens`): `query` is `[total_q, q_heads, head_dim]`, `key`/`value`
    `[total_k, kv_heads, head_dim]`, and the two `i32` cumulative-length
    vectors of size `batch + 1` delimit each sequence.

    The result has the query's type. The optional second result is the
    log-sum-exp (natural log, f32): `[batch, q_heads, seq_q]` dense or
    `[q_heads, total_q]` ragged; a row with no visible key gives `-inf` and
    an output of zeros.

    `scale` defaults to `1/sqrt(head_dim)`; `softcap = c > 0` applies
    `c * tanh(s / c)` after scaling.

    ```mlir
    %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
        : (tensor<?x?x32x128xf16>, tensor<?x?x8x128xf16>,
           tensor<?x?x8x128xf16>)
        -> (tensor<?x?x32x128xf16>, tensor<?x32x?xf32>)
    ```
  }];
  let arguments = !con((ins AnyRankedTensor:$query, AnyRankedTensor:$key,
                       AnyRankedTensor:$value,
                       Optional<AnyRankedTensor>:$cuSeqlensQ,
                       Optional<AnyRankedTensor>:$cuSeqlensK),
                   Attn_SparsityArguments,
                   (ins OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<F32Attr>:$softcap,
                       OptionalAttr<Attn_MaskAttr>:$mask));
  let results = (outs AnyRankedTensor:$output,
                      Optional<AnyRankedTensor>:$lse);
  let assemblyFormat = [{
    $query `,` $key `,` $value
    (`cu_seqlens` `(` $cuSeqlensQ^ `,` $cuSeqlensK `)`)?
    (`block_sparse` `(` $blockOffsets^ `,` $blockIndices `)`)?
    (`block_full` `(` $blockFull^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool isRagged() { return getCuSeqlensQ() != nullptr; }
    int64_t getNumQueryHeads();
    int64_t getNumKVHeads();
    int64_t getHeadDim();
    /// Query heads sharing one KV head.
    int64_t getGroupSize() { return getNumQueryHeads() / getNumKVHeads(); }
    /// The scale with its default resolved.
    double getScaleOrDefault();
    /// The mask with `none` standing for an absent attribute.
    MaskAttr getMaskOrNone();
    ::mlir::Type getElementType() {
      return getQuery().getType().getElementType();
    }
    /// The structured mask of each KV head: `head_masks`, or `mask` (none
    /// when absent) for every head.
    ::llvm::SmallVector<MaskAttr> getKVHeadMasks();
    bool isBlockSparse() { return getBlockOffsets() != nullptr; }
  }];
}

def Attn_PagedAttentionOp : Attn_Op<"paged_attention",
    [AttrSizedOperandSegments]> {
  let summary = "Attention of new queries against a paged KV cache";
  let description = [{
    Reads each sequence's keys and values through a CSR page table
    (FlashInfer's `kv_indptr`, `kv_indices`, `kv_last_page_len`; see
    docs/kv-cache.md), dequantizing inside the tile loads.

    Decode form: `query` is `[batch, q_heads, head_dim]`, one query per
    sequence. Append/prefill form (with `qo_indptr`, `[batch + 1]` i32):
    `query` is `[total_q, q_heads, head_dim]` and sequence `b`'s queries are
    the last tokens of its KV sequence (bottom-right alignment). The result
    has the query's type; the optional LSE is `[q_heads, batch]` or
    `[q_heads, total_q]` f32. `scale`, `softcap` and `mask` are those of
    `attn.attention`. A cache with a residual window takes `kv_rings`
    (`[batch]` i32), each sequence's ring: its keys within the last
    `residual` positions are read from there, unquantized. `head_masks`,
    `block_sparse` and `block_full` are those of `attn.attention`, with KV
    blocks numbered by position in the sequence; decode has one query block
    (`BQ = 1`), and `attn.select_pages` produces its block lists.

    ```mlir
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        {mask = #attn.mask<causal>}
        : (tensor<?x32x128xf16>, !attn.kv_cache<page_size = 16, kv_heads = 8,
           head_dim = 128, layout = nhd, storage = i8>, tensor<?xi32>,
           tensor<?xi32>, tensor<?xi32>) -> tensor<?x32x128xf16>
    ```
  }];
  let arguments = !con((ins AnyRankedTensor:$query,
                       Arg<Attn_KVCacheType, "", [MemRead]>:$cache,
                       AnyRankedTensor:$kvIndptr, AnyRankedTensor:$kvIndices,
                       AnyRankedTensor:$kvLastPageLen,
                       Optional<AnyRankedTensor>:$qoIndptr,
                       Optional<AnyRankedTensor>:$kvRings),
                   Attn_SparsityArguments,
                   (ins OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<F32Attr>:$softcap,
                       OptionalAttr<Attn_MaskAttr>:$mask));
  let results = (outs AnyRankedTensor:$output,
                      Optional<AnyRankedTensor>:$lse);
  let assemblyFormat = [{
    $query `,` $cache `,` $kvIndptr `,` $kvIndices `,` $kvLastPageLen
    (`qo_indptr` `(` $qoIndptr^ `)`)?
    (`kv_rings` `(` $kvRings^ `)`)?
    (`block_sparse` `(` $blockOffsets^ `,` $blockIndices `)`)?
    (`block_full` `(` $blockFull^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    KVCacheType getCacheType() { return ::llvm::cast<KVCacheType>(
        getCache().getType()); }
    /// Several queries per sequence (append/prefill) rather than one.
    bool isRagged() { return getQoIndptr() != nullptr; }
    int64_t getNumQueryHeads() { return getQuery().getType().getDimSize(1); }
    int64_t getNumKVHeads() { return getCacheType().getNumKVHeads(); }
    int64_t getHeadDim() { return getCacheType().getHeadDim(); }
    int64_t getGroupSize() { return getNumQueryHeads() / getNumKVHeads(); }
    double getScaleOrDefault();
    MaskAttr getMaskOrNone();
    ::mlir::Type getElementType() {
      return getQuery().getType().getElementType();
    }
    /// The structured mask of each KV head: `head_masks`, or `mask` (none
    /// when absent) for every head.
    ::llvm::SmallVector<MaskAttr> getKVHeadMasks();
    bool isBlockSparse() { return getBlockOffsets() != nullptr; }
  }];
}

def Attn_SelectPagesOp : Attn_Op<"select_pages"> {
  let summary = "Query-aware top-k page selection for paged decode (Quest)";
  let description = [{
    Scores every page of each sequence by an upper bound of its keys' dot
    products with the current query, from the per-page key minima and
    maxima of a `summary = minmax` cache: for KV head `h`, the largest over
    its query heads `g` of `sum_d max(q[g,d] * kmax[d], q[g,d] * kmin[d])`.
    Keeps the first `sink_pages` and the last `recent_pages` pages, then the
    best-scoring others (ties: lower page first), `top_k` pages in all (all
    of them when a sequence has no more). The results are the block-sparse
    operands of a decode `attn.paged_attention` with `block_size = array<i64:
    1, page_size>`: `offsets` `[batch, kv_heads, 2]` = `[0, n]` and
    `indices` `[batch, kv_heads, top_k]`, the selected logical pages in
    ascending order followed by `-1`. The whole cache stays; only the read
    is sparse (docs/sparsity.md).

    ```mlir
    %offsets, %pages = attn.select_pages %q, %cache, %indptr, %indices, %last
        {top_k = 64, sink_pages = 1, recent_pages = 4}
        : (tensor<?x32x128xf16>, !attn.kv_cache<page_size = 16, kv_heads = 8,
           head_dim = 128, layout = nhd, storage = i8, summary = minmax>,
           tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> (tensor<?x8x2xi32>, tensor<?x8x64xi32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$query,
                       Arg<Attn_KVCacheType, "", [MemRead]>:$cache,
                       AnyRankedTensor:$kvIndptr, AnyRankedTensor:$kvIndices,
                       AnyRankedTensor:$kvLastPageLen,
                       I64Attr:$top_k,
                       DefaultValuedAttr<I64Attr, "0">:$sink_pages,
                       DefaultValuedAttr<I64Attr, "0">:$recent_pages);
  let results = (outs AnyRankedTensor:$offsets, AnyRankedTensor:$indices);
  let assemblyFormat = [{
    $query `,` $cache `,` $kvIndptr `,` $kvIndices `,` $kvLastPageLen
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    KVCacheType getCacheType() { return ::llvm::cast<KVCacheType>(
        getCache().getType()); }
    int64_t getGroupSize() {
      return getQuery().getType().getDimSize(1) /
             getCacheType().getNumKVHeads();
    }
  }];
}

def Attn_KVAppendOp : Attn_Op<"kv_append"> {
  let summary = "Write new tokens into a KV cache, quantizing on write";
  let description = [{
    Writes token `i` of `key` and `value` (`[num_new, kv_heads, head_dim]`,
    f32, f16 or bf16) to slot `slots[i]` (`page * page_size + offset`, vLLM's
    slot mapping; `-1` skips the token). Quantized storage updates its
    scales as docs/kv-cache.md specifies: per-token V scales, and per-channel
    K scales over `k_group` slots that grow (requantizing the group's earlier
    tokens) when a new token exceeds them. Tokens are written in order. A
    cache with a residual window also takes `ring_slots` (`ring * residual +
    position % residual`, `-1` skips) and writes each token, in f16, to its
    sequence's ring.

    ```mlir
    attn.kv_append %k, %v, %slots into %cache
        : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi32>,
          !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128,
                         layout = nhd, storage = i8>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$key, AnyRankedTensor:$value,
                       AnyRankedTensor:$slots,
                       Optional<AnyRankedTensor>:$ringSlots,
                       Arg<Attn_KVCacheType, "", [MemRead, MemWrite]>:$cache);
  let assemblyFormat = [{
    $key `,` $value `,` $slots
    (`ring_slots` `(` $ringSlots^ `:` type($ringSlots) `)`)?
    `into` $cache attr-dict `:` type($key) `,`
    type($value) `,` type($slots) `,` qualified(type($cache))
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    KVCacheType getCacheType() { return ::llvm::cast<KVCacheType>(
        getCache().getType()); }
  }];
}

def Attn_MergeOp : Attn_Op<"merge", [Pure]> {
  let summary = "Combine partial attention results by their log-sum-exp";
  let description = [{
    `partial_o` (`[num_partials, tokens, heads, head_dim]`) and
    `partial_lse` (`[num_partials, heads, tokens]`, natural log) are
    attentions of the same queries over disjoint key sets. The result is the
    attention over their union: `lse = log(sum_p exp(lse_p))`,
    `o = sum_p exp(lse_p - lse) * o_p`. Partials with `lse = -inf` add
    nothing; a row where every partial is `-inf` gives zeros and `-inf`.
    Split-KV decode, shared-prefix (cascade) attention and attention over
    several memory tiers all end in this combine.

    ```mlir
    %o, %lse = attn.merge %po, %plse
        : (tensor<?x?x32x128xf32>, tensor<?x32x?xf32>)
        -> (tensor<?x32x128xf16>, tensor<32x?xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$partialOutput,
                       AnyRankedTensor:$partialLse);
  let results = (outs AnyRankedTensor:$output,
                      Optional<AnyRankedTensor>:$lse);
  let assemblyFormat = [{
    $partialOutput `,` $partialLse attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

// The copies of a planned step (docs/memory-planning.md). They are not Pure:
// their effects keep them where the planner put them, since their position
// in the schedule is what makes a transfer overlap the kernels around it.
defvar Attn_Copyable = AnyTypeOf<[AnyStaticShapeTensor, Attn_KVCacheType]>;

def Attn_CopyStartOp : Attn_Op<"copy_start", [
    MemoryEffects<[MemRead, MemWrite]>,
    DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "Start an asynchronous copy of a value to another place";
  let description = [{
    Issues a copy of `source` (a static-shape tensor or a KV cache, all its
    components) to the place `to` on the copy stream and returns its handle.
    `attn.copy_done` waits for it; the handle has exactly one
    `attn.copy_done` user. The memory planner inserts these pairs: a
    prefetch from `host` to `hbm` before a kernel reads the value, an
    offload from `hbm` to `host` after a kernel wrote it. The source must
    stay untouched until the wait.

    ```mlir
    %c = attn.copy_start %x to #attn.place<hbm, 4096> : tensor<2x8xf16>
    %y = attn.copy_done %c : !attn.copy<tensor<2x8xf16>>
    ```
  }];
  let arguments = (ins Attn_Copyable:$source, Attn_PlaceAttr:$to);
  let results = (outs Attn_CopyType:$copy);
  // `$source to #attn.place<...> attr-dict : type($source)`; custom since a
  // qualified attribute before `:` would be ambiguous with a typed one.
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The one attn.copy_done of this copy (null only in invalid IR).
    CopyDoneOp getDone();
  }];
}

def Attn_CopyDoneOp : Attn_Op<"copy_done", [
    MemoryEffects<[MemRead, MemWrite]>,
    DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "Wait for a copy and use the value at its destination";
  let description = [{
    Blocks until the copy `copy` (the result of an `attn.copy_start`) has
    completed; the result is the copied value at the copy's destination
    place, of the type the copy moves.

    ```mlir
    %y = attn.copy_done %c : !attn.copy<tensor<2x8xf16>>
    ```
  }];
  let arguments = (ins Attn_CopyType:$copy);
  let results = (outs Attn_Copyable:$result);
  let assemblyFormat = [{
    $copy attr-dict `:` qualified(type($copy))
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The attn.copy_start this waits for (null only in invalid IR).
    CopyStartOp getStart();
  }];
}

#endif // ATTN_OPS_TD
