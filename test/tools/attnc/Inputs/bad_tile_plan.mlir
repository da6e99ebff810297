// A hand-written attn.tile_plan that lacks fields (manifest-tile-plan.mlir).
func.func @bad(%q: tensor<?x?x2x64xf16>, %k: tensor<?x?x2x64xf16>,
               %v: tensor<?x?x2x64xf16>) -> tensor<?x?x2x64xf16> {
  %o = attn.attention %q, %k, %v {attn.tile_plan = {block_q = 128 : i64}}
      : (tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>)
      -> tensor<?x?x2x64xf16>
  return %o : tensor<?x?x2x64xf16>
}
