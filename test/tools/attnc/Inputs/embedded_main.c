/* Links a --linkage=object artifact statically: the header's lookup finds
 * every entry point, and the embedded manifest is manifest.json byte for
 * byte. */
#include "gqa.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc != 2)
    return 2;
  FILE *f = fopen(argv[1], "rb");
  if (!f)
    return 2;
  static char file[1 << 20];
  size_t n = fread(file, 1, sizeof(file) - 1, f);
  fclose(f);
  file[n] = '\0';
  printf("manifest %s\n",
         strcmp(file, attnc_gqa_manifest) == 0 ? "identical" : "differs");
  printf("run %s\n", attnc_gqa_symbol("varlen__run") == (void *)varlen__run
                         ? "found"
                         : "missing");
  printf("work_items %s\n",
         attnc_gqa_symbol("gqa_decode__work_items") ? "found" : "missing");
  printf("unknown %s\n", attnc_gqa_symbol("gqa_decode") ? "found" : "NULL");
  return 0;
}
