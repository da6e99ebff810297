"""Writes a fixed BSR for @bsr_dense with batch 1, 2 KV heads, 40 queries (3 query blocks of
16) and 70 keys (3 KV blocks of 32) to DIR/{offsets,indices,full}.npy.

Head 0: row 0 lists block 0 (full), row 1 blocks 1 and 0 (partial), row 2 nothing.
Head 1: row 0 nothing, row 1 block 0 (full), row 2 blocks 2 (partial) and 1 (full).
offsets[0] = 1 for head 1 (the first entry is unused); unused entries are -1."""
import sys
from pathlib import Path

import numpy as np

d = Path(sys.argv[1])
d.mkdir(parents=True, exist_ok=True)
offsets = np.array([[[0, 1, 3, 3], [1, 1, 2, 4]]], np.int32)
indices = np.array([[[0, 1, 0, -1], [-1, 0, 2, 1]]], np.int32)
full = np.array([[[1, 0, 0, 0], [0, 7, 0, -1]]], np.int8)
np.save(d / "offsets.npy", offsets)
np.save(d / "indices.npy", indices)
np.save(d / "full.npy", full)
