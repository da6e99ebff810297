/* gpu-target.test: the generated header's launch geometry, as C. */
#include "gpu_kernels.h"
#include <stdio.h>

int main(void) {
  attnc_gpu_launch l = attnc_gpu_kernels_prefill_launch(3, 1000, 4000);
  attnc_gpu_launch w = attnc_gpu_kernels_window_launch();
  printf("%u %u %u %u %zu %u\n", l.grid[0], l.grid[1], l.grid[2], l.block[0],
         l.dynamic_smem_bytes, w.grid[0]);
  /* The split-KV decode: 5 sequences in 6 splits, then the merge. */
  attnc_gpu_launch d = attnc_gpu_kernels_decode_launch(5, 100, 40, 6);
  attnc_gpu_launch m = attnc_gpu_kernels_decode_merge_launch(5, 6);
  printf("%u %u %u %u %u %u %u %d %zu\n", d.grid[0], d.grid[1], d.grid[2],
         m.grid[0], m.grid[1], m.grid[2], m.block[0],
         ATTNC_GPU_KERNELS_DECODE_MAX_SPLITS,
         attnc_gpu_kernels_decode_scratch_bytes(5, 6));
  return 0;
}
