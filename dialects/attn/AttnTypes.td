//===- AttnTypes.td - attn dialect types -------------------*- tablegen -*-===//

#ifndef ATTN_TYPES_TD
#define ATTN_TYPES_TD

include "attn/AttnDialect.td"
include "mlir/IR/AttrTypeBase.td"

def Attn_KVCacheType : TypeDef<Attn_Dialect, "KVCache"> {
  let mnemonic = "kv_cache";
  let summary = "A reference to one layer's paged, possibly quantized KV cache";
  let description = [{
    The pages of one layer's K and V, `page_size` tokens each, in a pool the
    caller owns. A value of this type is a reference (like a memref): ops
    read and write through it. At the kernel boundary it becomes its
    component buffers: the K and V pages and, for quantized storage, the
    scale (and minimum) buffers. docs/kv-cache.md gives their shapes and the
    quantization rules.

    - `layout = nhd`: a page is `[page_size, kv_heads, head_dim]`;
      `hnd`: `[kv_heads, page_size, head_dim]`.
    - `storage`: `f16`, `bf16` (no scales); `f8E4M3FN`, `f8E5M2` (per-head
      scales); `i8` (symmetric; K per channel over `k_group` tokens, V per
      token); `i4` (asymmetric, two per byte, low nibble first; K per
      channel over `k_group` tokens, V per token: the KIVI scheme).
    - `k_group` (i8 and i4 only) divides `page_size`; default `page_size`.
    - `residual = R` (quantized storage only): the R most recent tokens of
      each sequence are also kept in f16, in a per-sequence ring, and read
      from there (KIVI's residual window).
    - `summary = minmax`: per page and KV head, the element-wise minimum and
      maximum of the keys written to the page (`k_page_min`, `k_page_max`),
      kept by `attn.kv_append` for `attn.select_pages` (docs/sparsity.md).

    ```mlir
    !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>
    !attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128, layout = hnd, storage = i8, k_group = 64>
    !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, k_group = 16, residual = 128>
    ```
  }];
  let parameters = (ins "int64_t":$pageSize, "int64_t":$numKVHeads,
                        "int64_t":$headDim, "bool":$headMajor,
                        "::mlir::Type":$storage, "int64_t":$kGroup,
                        "int64_t":$residual, "bool":$pageSummary);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// One buffer of the cache at the kernel boundary.
    struct Component {
      /// Suffix of the argument name and manifest role (`k_pages`, ...).
      ::llvm::StringRef role;
      /// Element type of the buffer (fp8 and packed i4 travel as i8).
      ::mlir::Type elementType;
      /// The manifest's dtype name (`f8e4m3fn`, `u8`, ...).
      ::llvm::StringRef dtype;
      /// A dynamic dimension 0 counts pages (`num_pages`) or rings
      /// (`num_rings`): `countSymbol`.
      ::llvm::SmallVector<int64_t> shape;
      /// False for per-head scales and rings, which are not paged.
      bool paged;
      ::llvm::StringRef countSymbol;
    };
    ::llvm::SmallVector<Component> getComponents() const;
    /// Bytes of one token in every paged component (scales included).
    double getBytesPerToken() const;
    bool isFloat8() const;
    bool isInt8() const;
    bool isInt4() const;
    bool hasResidual() const { return getResidual() > 0; }
    /// Keeps per-page key minima and maxima (`summary = minmax`).
    bool hasPageSummary() const { return getPageSummary(); }
    /// `page_size / k_group` K scale groups per page.
    int64_t getGroupsPerPage() const { return getPageSize() / getKGroup(); }
  }];
}

def Attn_CopyType : TypeDef<Attn_Dialect, "Copy"> {
  let mnemonic = "copy";
  let summary = "An asynchronous copy of a value between memory tiers";
  let description = [{
    The handle of a copy in flight: `attn.copy_start` issues it and
    `attn.copy_done` waits for it and yields the copied value, of type `T`
    (a static-shape ranked tensor or a `!attn.kv_cache`).

    ```mlir
    !attn.copy<tensor<2x8xf16>>
    !attn.copy<!attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>>
    ```
  }];
  let parameters = (ins "::mlir::Type":$valueType);
  let assemblyFormat = "`<` $valueType `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// What a copy can move: a static-shape ranked tensor or a KV cache.
    static bool isCopyable(::mlir::Type type);
  }];
}

#endif // ATTN_TYPES_TD
