/* gpu-target.test: the generated header's launch geometry, as C. */
#include "gpu_kernels.h"
#include <stdio.h>

int main(void) {
  attnc_gpu_launch l = attnc_gpu_kernels_prefill_launch(3, 1000, 4000);
  attnc_gpu_launch w = attnc_gpu_kernels_window_launch();
  printf("%u %u %u %u %zu %u\n", l.grid[0], l.grid[1], l.grid[2], l.block[0],
         l.dynamic_smem_bytes, w.grid[0]);
  return 0;
}
