"""A functional emulator of the PTX that attnc's GPU kernels compile to (tests only).

No GPU is available in CI, so the kernels' PTX is executed here instead, to check their
arithmetic, indexing, fragment layouts, masks and pipelining against the float64 reference
before a device does (docs/gpu.md, "The PTX emulator"). It runs one launch at a time: every
thread of the grid is a lane of one SIMT machine, vectorized with numpy. Each step executes the
instruction of the top entry of a reconvergence stack for its lanes: a branch that splits them
runs each side in turn up to the branch's immediate post-dominator, where they join again (as
the device's convergence barriers do), so:

  - warp collectives (shfl.sync, ldmatrix, mma.sync) must be reached by whole warps, and
    bar.sync by every live thread of a block, else the launch fails (divergence is a bug);
  - global accesses must fall inside an allocation and be aligned to their size, shared ones
    inside the block's window (static variables, then the dynamic bytes), else the launch
    fails as the device would ("illegal address", "misaligned address");
  - cp.async copies land in shared memory only at the cp.async.wait_group that completes their
    group, so a read before the wait sees stale bytes, and shared memory starts as 0xFF bytes
    (NaN in f16, bf16 and f32): a missing wait or an unwritten tile shows up in the output.

Instruction semantics follow the PTX ISA (8.x): mma.sync m16n8k16 and ldmatrix fragment layouts,
shfl.sync's lane arithmetic, prmt, bfe, and the conversions' rounding. Tensor-core products are
accumulated in float64 and rounded once to f32 (the device's order of additions differs, well
below the tests' tolerances); ex2.approx and lg2.approx are exact. It supports the instructions
LLVM's NVPTX back-end emits for these kernels and rejects any other with its line.

    kernels = parse_module(ptx_text)
    launch(kernels["name"], grid, block, smem_bytes, params, memory)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

EXITED = np.iinfo(np.int64).max


def mul_hi_64(a, b, signed: bool):
    """The high 64 bits of the 128-bit product of 64-bit lanes a and b."""
    ua, ub = a.astype(np.uint64), b.astype(np.uint64)
    m32, s32 = np.uint64(0xFFFFFFFF), np.uint64(32)
    a0, a1, b0, b1 = ua & m32, ua >> s32, ub & m32, ub >> s32
    p01, p10 = a0 * b1, a1 * b0
    mid = ((a0 * b0) >> s32) + (p01 & m32) + (p10 & m32)
    hi = a1 * b1 + (p01 >> s32) + (p10 >> s32) + (mid >> s32)
    if signed:  # two's complement: subtract b where a < 0 and a where b < 0
        hi = hi - np.where(a.astype(np.int64) < 0, ub, 0).astype(np.uint64)
        hi = hi - np.where(b.astype(np.int64) < 0, ua, 0).astype(np.uint64)
        return hi.astype(np.int64)
    return hi


class EmulationError(RuntimeError):
    """A launch the device would fail (or that this emulator cannot run)."""


# ---------------------------------------------------------------------------------------------
# Types

WIDTH = {"pred": 1, "b8": 8, "u8": 8, "s8": 8, "b16": 16, "u16": 16, "s16": 16, "f16": 16,
         "bf16": 16, "b32": 32, "u32": 32, "s32": 32, "f32": 32, "b64": 64, "u64": 64,
         "s64": 64, "f64": 64}
UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}
SINT = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
MASK = {w: np.uint64((1 << w) - 1) for w in (1, 8, 16, 32, 64)}


def kind(t: str) -> str:
    """'u', 's', 'f' or 'b' (bit-size types, and pred)."""
    return "f" if t in ("f16", "bf16", "f32", "f64") else t[0] if t[0] in "us" else "b"


def to_value(raw: np.ndarray, t: str) -> np.ndarray:
    """The raw bits (uint64 lanes) as numbers of PTX type t; f16/bf16 become float32."""
    w = WIDTH[t]
    if t == "pred":
        return raw != 0
    u = raw.astype(UINT[w]) if w < 64 else raw
    if t == "bf16":
        return (u.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if t == "f16":
        return u.view(np.float16).astype(np.float32)
    if t == "f32":
        return u.view(np.float32)
    if t == "f64":
        return u.view(np.float64)
    if kind(t) == "s":
        return u.view(SINT[w]).astype(np.int64)
    return u.astype(np.uint64)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round to nearest even, NaN to the canonical quiet NaN."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    return np.where(np.isnan(x), np.uint64(0x7FC0), rounded & np.uint64(0xFFFF))


def to_raw(v, t: str, n: int) -> np.ndarray:
    """Numbers of PTX type t as raw bits (uint64 lanes, zero-extended from t's width)."""
    w = WIDTH[t]
    if not (isinstance(v, np.ndarray) and v.shape == (n,)):
        v = np.broadcast_to(np.asarray(v), (n,))
    if t == "pred":
        return v.astype(bool).astype(np.uint64)
    if t == "bf16":
        return f32_to_bf16_bits(v.astype(np.float32))
    if t == "f16":
        return v.astype(np.float16).view(np.uint16).astype(np.uint64)
    if t == "f32":
        return v.astype(np.float32).view(np.uint32).astype(np.uint64)
    if t == "f64":
        return v.astype(np.float64).view(np.uint64).copy()
    if v.dtype.kind == "f":
        raise EmulationError(f"float value for integer type {t}")
    return (v.astype(np.int64).view(np.uint64) if v.dtype.kind == "i" else
            v.astype(np.uint64)) & MASK[w]


# ---------------------------------------------------------------------------------------------
# Parsing

@dataclass
class Operand:
    """A register, special register, immediate, symbol, address [base+offset] or vector."""
    kind: str  # reg, imm, sym, addr, vec, sink
    name: str = ""
    value: int = 0  # imm: raw bits; addr: offset
    items: list = field(default_factory=list)  # vec
    base: "Operand | None" = None  # addr


@dataclass
class Instruction:
    line: int
    text: str
    opcode: str
    parts: list
    operands: list
    guard: str | None = None
    guard_negated: bool = False


@dataclass
class Kernel:
    name: str
    params: list  # (name, bytes)
    instructions: list
    labels: dict
    reg_width: dict  # register name prefix -> width
    shared: dict  # symbol -> offset in the block's shared window
    static_shared: int  # bytes before the dynamic window
    _ipdom: dict | None = None

    def reconvergence(self) -> dict[int, int]:
        if self._ipdom is None:
            self._ipdom = immediate_post_dominators(self)
        return self._ipdom


def immediate_post_dominators(kernel: "Kernel") -> dict[int, int]:
    """For each conditional branch's index, the index of the first instruction of its block's
    immediate post-dominator (EXITED when only the exit post-dominates it): where lanes that
    took different sides of the branch run together again, as the device reconverges them."""
    prog = kernel.instructions
    n = len(prog)
    leaders = {0} | set(kernel.labels.values())
    for i, ins in enumerate(prog):
        if ins.parts[0] in ("bra", "ret", "exit") and i + 1 < n:
            leaders.add(i + 1)
    starts = sorted(x for x in leaders if x < n)
    block_of = {}
    for b, st in enumerate(starts):
        end = starts[b + 1] if b + 1 < len(starts) else n
        for i in range(st, end):
            block_of[i] = b
    exit_node = len(starts)
    succ = []
    for b, st in enumerate(starts):
        last = (starts[b + 1] if b + 1 < len(starts) else n) - 1
        ins = prog[last]
        nxt = block_of[last + 1] if last + 1 < n else exit_node
        if ins.parts[0] in ("ret", "exit"):
            succ.append({exit_node} | ({nxt} if ins.guard else set()))
        elif ins.parts[0] == "bra":
            t = block_of[kernel.labels[ins.operands[0].name]]
            succ.append({t} | ({nxt} if ins.guard else set()))
        else:
            succ.append({nxt})
    nodes = list(range(exit_node + 1))
    pdom = {v: set(nodes) for v in nodes}
    pdom[exit_node] = {exit_node}
    changed = True
    while changed:
        changed = False
        for b in reversed(range(exit_node)):
            new = {b} | set.intersection(*(pdom[x] for x in succ[b]))
            if new != pdom[b]:
                pdom[b], changed = new, True
    result = {}
    for i, ins in enumerate(prog):
        if ins.parts[0] == "bra" and ins.guard:
            b = block_of[i]
            strict = pdom[b] - {b}
            ip = next(d for d in strict if len(pdom[d]) == len(pdom[b]) - 1)
            result[i] = EXITED if ip == exit_node else starts[ip]
    return result


IMM_FLOAT = re.compile(r"^0([fFdD])([0-9a-fA-F]+)$")


def parse_operand(s: str) -> Operand:
    s = s.strip()
    if s.startswith("{"):
        return Operand("vec", items=[parse_operand(x) for x in s[1:-1].split(",")])
    if s.startswith("["):
        inner = s[1:-1].replace(" ", "")
        m = re.match(r"^([^+\-]+)(?:([+\-])(\w+))?$", inner)
        if not m:
            raise EmulationError(f"cannot parse address {s}")
        off = 0
        if m.group(3):
            off = int(m.group(3), 0) * (-1 if m.group(2) == "-" else 1)
        return Operand("addr", value=off, base=parse_operand(m.group(1)))
    if s == "_":
        return Operand("sink")
    if s.startswith("%"):
        return Operand("reg", name=s)
    m = IMM_FLOAT.match(s)
    if m:
        return Operand("imm", value=int(m.group(2), 16))
    if re.match(r"^-?(0[xX][0-9a-fA-F]+|\d+)U?$", s):
        return Operand("imm", value=int(s.rstrip("U"), 0) & 0xFFFFFFFFFFFFFFFF)
    return Operand("sym", name=s)


def split_operands(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse_shared_decl(line: str):
    """(symbol, bytes, align) of `.shared .align A .b8 NAME[N];` (N = 1 without brackets)."""
    m = re.match(r"^(?:\.extern\s+)?\.shared\s+(?:\.align\s+(\d+)\s+)?\.(\w+)\s+([\w$]+)"
                 r"(?:\[(\d*)\])?;$", line)
    if not m:
        raise EmulationError(f"cannot parse shared declaration: {line}")
    align = int(m.group(1) or 1)
    elem = WIDTH[m.group(2)] // 8
    count = int(m.group(4)) if m.group(4) else (0 if m.group(4) == "" else 1)  # NAME[]: 0
    return m.group(3), elem * count, align


def parse_module(text: str) -> dict[str, Kernel]:
    """The .entry functions of a PTX module."""
    lines = strip_comments(text).split("\n")
    # Module-level shared variables (the kernels' static workgroup buffers), then the entries.
    module_shared, depth = [], 0
    for line in lines:
        s = line.strip()
        if depth == 0 and (s.startswith(".shared") or s.startswith(".extern .shared")):
            module_shared.append(parse_shared_decl(s))
        depth += (s == "{") - (s == "}")
    kernels = {}
    i = 0
    while i < len(lines):
        m = re.match(r"^(?:\.visible\s+|\.weak\s+)?\.entry\s+([\w$]+)\s*\(?", lines[i].strip())
        if not m:
            i += 1
            continue
        name = m.group(1)
        header = lines[i]
        while ")" not in header:
            i += 1
            header += " " + lines[i]
        params = []
        for decl in header[header.index("(") + 1:header.index(")")].split(","):
            pm = re.match(r"^\s*\.param\s+\.(\w+)\b.*?([\w$]+)\s*$", decl)
            if pm:
                params.append((pm.group(2), WIDTH[pm.group(1)] // 8))
        while lines[i].strip() != "{":
            i += 1
        body_start, depth = i + 1, 0
        while True:  # inner "{" "}" lines only scope registers
            s = lines[i].strip()
            depth += (s == "{") - (s == "}")
            if s == "}" and depth == 0:
                break
            i += 1
        kernels[name] = parse_body(name, params, lines, body_start, i, module_shared)
        i += 1
    return kernels


def parse_body(name, params, lines, start, end, module_shared) -> Kernel:
    instructions, labels, reg_width = [], {}, {}
    shared_decls = list(module_shared)
    statement, first_line = "", 0
    for ln in range(start, end):
        s = lines[ln].strip()
        if not statement:
            if not s or s in ("{", "}"):
                continue
            if s.endswith(":"):
                labels[s[:-1]] = len(instructions)
                continue
            first_line = ln + 1
        statement += " " + s if statement else s
        if not statement.endswith(";"):
            continue  # an instruction continued on the next line (mma.sync)
        s, statement = statement, ""
        if s.startswith(".reg"):
            m = re.match(r"^\.reg\s+\.(\w+)\s+(%[a-z]+)<\d+>;$", s)
            if not m:
                raise EmulationError(f"line {first_line}: cannot parse {s}")
            reg_width[m.group(2)] = WIDTH[m.group(1)]
            continue
        if s.startswith(".shared") or s.startswith(".extern .shared"):
            shared_decls.append(parse_shared_decl(s))
            continue
        if s.startswith("."):
            continue  # .maxntid, .reqntid, .pragma ...
        s = s.rstrip(";").strip()
        guard, negated = None, False
        gm = re.match(r"^@(!?)(%\w+)\s+(.*)$", s)
        if gm:
            negated, guard, s = gm.group(1) == "!", gm.group(2), gm.group(3)
        op, _, rest = s.partition(" ")
        operands = [parse_operand(x) for x in split_operands(rest.strip())] if rest.strip() else []
        instructions.append(Instruction(first_line, s, op, op.split("."), operands, guard,
                                        negated))
    # Static variables from offset 0, then the dynamic window (extern arrays, size 0) after
    # them, as the driver lays the block's shared memory out.
    shared, offset = {}, 0
    for sym, size, align in shared_decls:
        if size == 0:
            continue
        offset = (offset + align - 1) // align * align
        shared[sym] = offset
        offset += size
    static_shared = (offset + 15) // 16 * 16
    for sym, size, align in shared_decls:
        if size == 0:
            shared[sym] = static_shared
    return Kernel(name, params, instructions, labels, reg_width, shared, static_shared)


# ---------------------------------------------------------------------------------------------
# Memory

class GlobalMemory:
    """Device allocations: (base address, uint8 array) pairs, gathered into one heap for the
    launch; `write_back` copies the heap into the arrays afterwards."""

    def __init__(self, allocations):
        allocations = sorted(allocations, key=lambda a: a[0])
        self.arrays = [a for _, a in allocations]
        self.bases = np.array([b for b, _ in allocations], dtype=np.uint64)
        self.sizes = np.array([a.size for a in self.arrays], dtype=np.uint64)
        self.offsets = np.concatenate(([0], np.cumsum(self.sizes)[:-1])).astype(np.uint64) \
            if allocations else np.zeros(0, np.uint64)
        self.heap = np.concatenate(self.arrays) if allocations else np.zeros(0, np.uint8)

    def translate(self, addr: np.ndarray, width: int, what: str) -> np.ndarray:
        ids = np.searchsorted(self.bases, addr, side="right").astype(np.int64) - 1
        ok = ids >= 0
        idc = np.maximum(ids, 0)
        if len(self.bases):
            ok &= addr + np.uint64(width) <= self.bases[idc] + self.sizes[idc]
        else:
            ok &= False
        if not ok.all():
            bad = addr[~ok][0]
            raise EmulationError(f"{what}: illegal address 0x{int(bad):x} ({width} bytes) is "
                                 f"outside every allocation")
        return (addr - self.bases[idc] + self.offsets[idc]).astype(np.int64)

    def write_back(self):
        for arr, off, size in zip(self.arrays, self.offsets, self.sizes):
            arr[...] = self.heap[int(off):int(off + size)]


# ---------------------------------------------------------------------------------------------
# The machine

class Machine:
    def __init__(self, kernel: Kernel, grid, block, smem_bytes, params, memory: GlobalMemory):
        self.k = kernel
        self.mem = memory
        threads = block[0] * block[1] * block[2]
        if threads % 32:
            raise EmulationError("blocks must be whole warps")
        blocks = grid[0] * grid[1] * grid[2]
        self.n = n = blocks * threads
        self.threads = threads
        lane = np.arange(n, dtype=np.int64)
        t = lane % threads
        b = lane // threads
        self.block_of = b
        self.special = {
            "%tid.x": t % block[0], "%tid.y": t // block[0] % block[1],
            "%tid.z": t // (block[0] * block[1]),
            "%ctaid.x": b % grid[0], "%ctaid.y": b // grid[0] % grid[1],
            "%ctaid.z": b // (grid[0] * grid[1]),
            "%ntid.x": np.full(n, block[0]), "%ntid.y": np.full(n, block[1]),
            "%ntid.z": np.full(n, block[2]),
            "%nctaid.x": np.full(n, grid[0]), "%nctaid.y": np.full(n, grid[1]),
            "%nctaid.z": np.full(n, grid[2]), "%laneid": t % 32,
        }
        self.special = {k: v.astype(np.uint64) for k, v in self.special.items()}
        self.window = kernel.static_shared + smem_bytes
        self.shared = np.full(blocks * self.window, 0xFF, dtype=np.uint8)
        if len(params) != len(kernel.params):
            raise EmulationError(f"{kernel.name} takes {len(kernel.params)} parameters, "
                                 f"got {len(params)}")
        self.params = {}
        for (pname, size), value in zip(kernel.params, params):
            if len(value) != size:
                raise EmulationError(f"parameter {pname} is {size} bytes, got {len(value)}")
            self.params[pname] = int.from_bytes(value, "little")
        self.regs: dict[str, np.ndarray] = {}
        self.widths: dict[str, int] = {}
        # Looked up once per launch, not per step: each opcode's handler (None where there
        # is none: refused when executed) and each guard predicate's operand.
        self.handlers = {i.parts[0]: getattr(self, "op_" + i.parts[0], None)
                         for i in kernel.instructions}
        self.guards = {i.guard: Operand("reg", name=i.guard)
                       for i in kernel.instructions if i.guard}
        self.live = np.ones(n, bool)  # lanes not exited
        # cp.async: per-lane committed group counts and the copies not yet landed.
        self.groups = np.zeros(n, dtype=np.int64)
        self.pending: list[dict] = []
        self.steps = 0

    # -- operands -----------------------------------------------------------------------------

    def width_of(self, reg: str) -> int:
        w = self.widths.get(reg)
        if w is None:
            prefix = reg.rstrip("0123456789")
            if prefix not in self.k.reg_width:
                raise EmulationError(f"undeclared register {reg}")
            w = self.widths[reg] = self.k.reg_width[prefix]
        return w

    def read(self, op: Operand, idx: np.ndarray) -> np.ndarray:
        """Raw bits (uint64) of the operand for lanes idx."""
        if op.kind == "reg":
            if op.name in self.special:
                return self.special[op.name][idx]
            r = self.regs.get(op.name)
            if r is None:
                raise EmulationError(f"register {op.name} read before written")
            return r[idx]
        if op.kind == "imm":
            return np.full(len(idx), op.value, dtype=np.uint64)
        if op.kind == "sym":
            if op.name in self.k.shared:
                return np.full(len(idx), self.k.shared[op.name], dtype=np.uint64)
            raise EmulationError(f"unknown symbol {op.name}")
        raise EmulationError(f"operand {op} cannot be read as a value")

    def value(self, op: Operand, idx, t: str) -> np.ndarray:
        return to_value(self.read(op, idx), t)

    def write(self, op: Operand, idx: np.ndarray, raw: np.ndarray):
        if op.kind == "sink":
            return
        if op.kind != "reg":
            raise EmulationError(f"cannot write {op}")
        r = self.regs.get(op.name)
        if r is None:
            # Uninitialized, as on the device (a lane reading a register it never wrote
            # reads garbage): only the writing lanes' elements are set.
            r = self.regs[op.name] = np.empty(self.n, dtype=np.uint64)
        r[idx] = raw & MASK[self.width_of(op.name)]

    def put(self, op: Operand, idx, v, t: str):
        """Writes numbers of type t, sign-extending signed ones to the register's width."""
        raw = to_raw(v, t, len(idx))
        if kind(t) == "s" and op.kind == "reg":
            w = WIDTH[t]
            sign = (raw >> np.uint64(w - 1)) & np.uint64(1)
            raw = np.where(sign == 1, raw | (~MASK[w]), raw)
        self.write(op, idx, raw)

    # -- addresses ----------------------------------------------------------------------------

    def address(self, op: Operand, idx) -> np.ndarray:
        base = op.base
        if base.kind == "sym" and base.name in self.params:
            raise EmulationError("parameter address used as a value")
        return self.read(base, idx) + np.uint64(op.value & 0xFFFFFFFFFFFFFFFF)

    def shared_offsets(self, addr, idx, width, what):
        if np.any(addr + np.uint64(width) > np.uint64(self.window)):
            bad = int(addr[addr + np.uint64(width) > np.uint64(self.window)][0])
            raise EmulationError(f"{what}: shared address {bad} + {width} bytes is past the "
                                 f"block's {self.window} bytes")
        return (self.block_of[idx] * self.window + addr.astype(np.int64))

    def space_offsets(self, space, addr, idx, width, what):
        if np.any(addr % np.uint64(width)):
            bad = int(addr[(addr % np.uint64(width)) != 0][0])
            raise EmulationError(f"{what}: misaligned address 0x{bad:x} for {width} bytes")
        if space == "shared":
            return self.shared, self.shared_offsets(addr, idx, width, what)
        if space == "global":
            return self.mem.heap, self.mem.translate(addr, width, what)
        raise EmulationError(f"{what}: the {space} state space is not supported")

    def load_bytes(self, space, addr, idx, width, what) -> np.ndarray:
        buf, off = self.space_offsets(space, addr, idx, width, what)
        return buf[off[:, None] + np.arange(width)]

    def store_bytes(self, space, addr, idx, data: np.ndarray, what):
        buf, off = self.space_offsets(space, addr, idx, data.shape[1], what)
        buf[off[:, None] + np.arange(data.shape[1])] = data

    # -- execution ----------------------------------------------------------------------------

    def run(self, max_steps: int = 50_000_000):
        """Executes the launch on a reconvergence stack: each entry is (pc, lanes, the pc
        where they rejoin the entry below); a branch that splits its lanes continues both
        sides, one after the other, up to the branch's immediate post-dominator."""
        prog = self.k.instructions
        ipdom = self.k.reconvergence()
        # Entries: [pc, lanes mask, rejoin pc, the mask's live lanes as indices (cached until
        # a lane exits)].
        stack = [[0, np.ones(self.n, bool), EXITED, None]]
        exits = 0
        with np.errstate(all="ignore"):
            while stack:
                top = stack[-1]
                pc, mask, rpc, cached = top
                if cached is None or cached[0] != exits:
                    cached = top[3] = (exits, np.flatnonzero(mask & self.live))
                idx = cached[1]
                if pc == rpc or len(idx) == 0:
                    stack.pop()
                    continue
                if pc >= len(prog):
                    raise EmulationError(f"{self.k.name}: fell off the end")
                ins = prog[pc]
                self.steps += 1
                if self.steps > max_steps:
                    raise EmulationError(f"{self.k.name}: more than {max_steps} steps")
                run = idx
                if ins.guard:
                    g = self.read(self.guards[ins.guard], idx) != 0
                    if ins.guard_negated:
                        g = ~g
                    run = idx[g]
                try:
                    target = self.execute(ins, run, idx)
                except EmulationError as e:
                    raise EmulationError(f"{self.k.name}, PTX line {ins.line} "
                                         f"({ins.text}): {e}") from None
                if target is None:
                    top[0] = pc + 1
                elif target == EXITED:
                    self.live[run] = False
                    exits += 1
                    top[0] = pc + 1
                elif len(run) == len(idx):
                    top[0] = target
                elif len(run) == 0:
                    top[0] = pc + 1
                else:  # divergence
                    r = ipdom[pc]
                    taken = np.zeros(self.n, bool)
                    taken[run] = True
                    if r == rpc:  # both sides rejoin where this entry ends: replace it
                        stack.pop()
                    else:
                        top[0] = r
                    stack.append([pc + 1, mask & ~taken, r, None])
                    stack.append([target, taken, r, None])

    def whole_warps(self, idx, what):
        if len(idx) % 32 or np.any(idx.reshape(-1, 32)[:, 0] % 32) or np.any(
                np.diff(idx.reshape(-1, 32), axis=1) != 1):
            raise EmulationError(f"{what} reached by part of a warp (divergence)")
        return idx.reshape(-1, 32)

    def execute(self, ins: Instruction, idx, all_idx):
        handler = self.handlers[ins.parts[0]]
        if handler is None:
            raise EmulationError(f"unsupported instruction {ins.opcode}")
        return handler(ins, ins.parts, ins.operands, idx, all_idx)

    # control flow
    def op_bra(self, ins, p, ops, idx, all_idx):
        label = ops[0].name
        if label not in self.k.labels:
            raise EmulationError(f"unknown label {label}")
        return self.k.labels[label]

    def op_ret(self, ins, p, ops, idx, all_idx):
        return EXITED

    op_exit = op_ret

    def op_bar(self, ins, p, ops, idx, all_idx):
        if len(idx) != len(all_idx):
            raise EmulationError("bar.sync under a predicate")
        blocks = np.unique(self.block_of[idx])
        live = np.isin(self.block_of, blocks) & self.live
        if live.sum() != len(idx):
            raise EmulationError("bar.sync reached by part of a block (divergence)")
        return None

    op_barrier = op_bar

    # data movement
    def op_mov(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        d, a = ops
        if d.kind == "vec":  # unpack
            raw = self.read(a, idx)
            w = WIDTH[t] // len(d.items)
            for i, item in enumerate(d.items):
                self.write(item, idx, (raw >> np.uint64(i * w)) & MASK[w])
        elif a.kind == "vec":  # pack
            w = WIDTH[t] // len(a.items)
            raw = np.zeros(len(idx), np.uint64)
            for i, item in enumerate(a.items):
                raw |= (self.read(item, idx) & MASK[w]) << np.uint64(i * w)
            self.write(d, idx, raw)
        else:
            self.write(d, idx, self.read(a, idx) & MASK[WIDTH[t]])

    def op_ld(self, ins, p, ops, idx, all_idx):
        space = p[1]
        t = p[-1]
        vec = 1
        for x in p[2:-1]:
            if x.startswith("v") and x[1:].isdigit():
                vec = int(x[1:])
        d, a = ops
        w = WIDTH[t] // 8
        if space == "param":
            name = a.base.name
            if name not in self.params:
                raise EmulationError(f"unknown parameter {name}")
            raw = np.full(len(idx), self.params[name] >> (8 * a.value) & ((1 << (8 * w)) - 1),
                          dtype=np.uint64)
            if kind(t) == "s":
                self.put(d, idx, to_value(raw, t), t)
            else:
                self.write(d, idx, raw)
            return None
        addr = self.address(a, idx)
        data = self.load_bytes(space, addr, idx, w * vec, ins.opcode)
        elems = np.ascontiguousarray(data).view(UINT[8 * w]).astype(np.uint64)
        items = d.items if d.kind == "vec" else [d]
        for i, item in enumerate(items):
            if kind(t) == "s":
                self.put(item, idx, to_value(elems[:, i], t), t)
            else:
                self.write(item, idx, elems[:, i])
        return None

    def op_st(self, ins, p, ops, idx, all_idx):
        space = p[1]
        t = p[-1]
        a, s = ops
        w = WIDTH[t] // 8
        items = s.items if s.kind == "vec" else [s]
        vals = np.stack([self.read(item, idx) for item in items], axis=1)
        data = (vals & MASK[8 * w]).astype(UINT[8 * w]).view(np.uint8).reshape(len(idx), -1)
        self.store_bytes(space, self.address(a, idx), idx, data, ins.opcode)
        return None

    def op_cp(self, ins, p, ops, idx, all_idx):
        # cp.async.cg.shared.global [dst], [src], cp-size, src-size
        if p[1] != "async":
            raise EmulationError(f"unsupported instruction {ins.opcode}")
        if p[2] == "commit_group":
            self.groups[idx] += 1
            return None
        if p[2] in ("wait_group", "wait_all"):
            keep = 0 if p[2] == "wait_all" else int(ops[0].value)
            self.land_copies(idx, keep)
            return None
        dst, src, size = ops[0], ops[1], ops[2].value
        src_size = self.read(ops[3], idx) if len(ops) > 3 else np.full(len(idx), size, np.uint64)
        if np.any(src_size > np.uint64(size)):
            raise EmulationError("src-size above cp-size")
        dst_addr = self.address(dst, idx)
        src_addr = self.address(src, idx)
        data = np.zeros((len(idx), size), np.uint8)
        reading = src_size > 0
        if reading.any():
            ri = np.flatnonzero(reading)
            # A partial source is read byte by byte up to src-size (the rest zero-filled).
            full = self.load_bytes("global", src_addr[ri], idx[ri], size, ins.opcode) \
                if np.all(src_size[ri] == size) else None
            if full is None:
                for j in ri:
                    ns = int(src_size[j])
                    off = self.mem.translate(src_addr[j:j + 1], ns, ins.opcode)[0]
                    data[j, :ns] = self.mem.heap[off:off + ns]
            else:
                data[ri] = full
        offs = self.shared_offsets(dst_addr, idx, size, ins.opcode)
        if np.any(dst_addr % np.uint64(size)):
            raise EmulationError("misaligned cp.async destination")
        self.pending.append({"lanes": idx.copy(), "group": self.groups[idx].copy(),
                             "offsets": offs, "data": data,
                             "done": np.zeros(len(idx), bool)})
        return None

    def land_copies(self, idx, keep):
        executing = np.zeros(self.n, bool)
        executing[idx] = True
        rest = []
        for c in self.pending:
            lanes = c["lanes"]
            sel = executing[lanes] & (c["group"] < self.groups[lanes] - keep) & ~c["done"]
            if sel.any():
                o = c["offsets"][sel]
                self.shared[o[:, None] + np.arange(c["data"].shape[1])] = c["data"][sel]
                c["done"] |= sel
            if not c["done"].all():
                rest.append(c)
        self.pending = rest

    # integer and bit arithmetic
    def binary(self, ops, idx, t, fn):
        a = self.value(ops[1], idx, t)
        b = self.value(ops[2], idx, t)
        self.put(ops[0], idx, fn(a, b), t)

    def op_add(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        self.binary(ops, idx, t, np.add)

    def op_sub(self, ins, p, ops, idx, all_idx):
        self.binary(ops, idx, p[-1], np.subtract)

    def op_mul(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        if kind(t) == "f":
            return self.binary(ops, idx, t, np.multiply)
        a = self.value(ops[1], idx, t)
        b = self.value(ops[2], idx, t)
        w = WIDTH[t]
        if p[1] == "wide":
            self.put(ops[0], idx, a * b, ("s" if kind(t) == "s" else "u") + str(2 * w))
        elif p[1] == "lo":
            self.put(ops[0], idx, a * b, t)
        elif p[1] == "hi":
            if w == 64:  # LLVM's division by a constant: 32-bit limbs
                return self.put(ops[0], idx, mul_hi_64(a, b, kind(t) == "s"), t)
            self.put(ops[0], idx, (a * b) >> np.int64(w) if kind(t) == "s" else
                     (a * b) >> np.uint64(w), t)
        else:
            raise EmulationError(f"unsupported instruction {ins.opcode}")

    def op_mad(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        a, b = self.value(ops[1], idx, t), self.value(ops[2], idx, t)
        if p[1] == "wide":  # c has twice the width of a and b
            tw = ("s" if kind(t) == "s" else "u") + str(2 * WIDTH[t])
            self.put(ops[0], idx, a * b + self.value(ops[3], idx, tw), tw)
            return
        c = self.value(ops[3], idx, t)
        if p[1] == "lo":
            self.put(ops[0], idx, a * b + c, t)
        elif kind(t) == "f":
            self.put(ops[0], idx, (a.astype(np.float64) * b + c).astype(np.float32), t)
        else:
            raise EmulationError(f"unsupported instruction {ins.opcode}")

    def op_fma(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        a, b, c = (self.value(o, idx, t).astype(np.float64) for o in ops[1:])
        self.put(ops[0], idx, (a * b + c), t)

    def op_div(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        if kind(t) == "f":
            return self.binary(ops, idx, t, np.divide)
        a = self.value(ops[1], idx, t)
        b = self.value(ops[2], idx, t)
        if np.any(b == 0):
            raise EmulationError("integer division by zero")
        if kind(t) == "s":
            q = np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)  # truncation
        else:
            q = a // b
        self.put(ops[0], idx, q, t)

    def op_rem(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        a = self.value(ops[1], idx, t)
        b = self.value(ops[2], idx, t)
        if np.any(b == 0):
            raise EmulationError("integer remainder by zero")
        if kind(t) == "s":
            r = np.abs(a) % np.abs(b) * np.sign(a)
        else:
            r = a % b
        self.put(ops[0], idx, r, t)

    def op_min(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        nan = "NaN" in p
        self.binary(ops, idx, t, np.minimum if kind(t) != "f" or nan else np.fmin)

    def op_max(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        nan = "NaN" in p
        self.binary(ops, idx, t, np.maximum if kind(t) != "f" or nan else np.fmax)

    def op_neg(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        a = self.value(ops[1], idx, t)
        self.put(ops[0], idx, -a, t)

    def op_abs(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        self.put(ops[0], idx, np.abs(self.value(ops[1], idx, t)), t)

    def bitwise(self, ops, idx, t, fn):
        if t == "pred":
            a = self.read(ops[1], idx) != 0
            b = self.read(ops[2], idx) != 0
            self.write(ops[0], idx, fn(a, b).astype(np.uint64))
            return
        w = WIDTH[t]
        self.write(ops[0], idx, fn(self.read(ops[1], idx), self.read(ops[2], idx)) & MASK[w])

    def op_and(self, ins, p, ops, idx, all_idx):
        self.bitwise(ops, idx, p[-1], np.bitwise_and)

    def op_or(self, ins, p, ops, idx, all_idx):
        self.bitwise(ops, idx, p[-1], np.bitwise_or)

    def op_xor(self, ins, p, ops, idx, all_idx):
        self.bitwise(ops, idx, p[-1], np.bitwise_xor)

    def op_not(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        a = self.read(ops[1], idx)
        self.write(ops[0], idx, (a == 0).astype(np.uint64) if t == "pred" else ~a & MASK[WIDTH[t]])

    def op_shl(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        w = WIDTH[t]
        a = self.read(ops[1], idx) & MASK[w]
        s = self.value(ops[2], idx, "u32").astype(np.uint64)
        r = np.where(s >= w, np.uint64(0), a << np.minimum(s, np.uint64(w - 1)))
        self.write(ops[0], idx, r & MASK[w])

    def op_shr(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        w = WIDTH[t]
        s = self.value(ops[2], idx, "u32").astype(np.int64)
        s = np.minimum(s, w - 1 if kind(t) == "s" else w)
        if kind(t) == "s":
            a = self.value(ops[1], idx, t)
            self.put(ops[0], idx, a >> s, t)
        else:
            a = self.read(ops[1], idx) & MASK[w]
            r = np.where(s >= w, np.uint64(0), a >> np.minimum(s, w - 1).astype(np.uint64))
            self.write(ops[0], idx, r)

    def op_bfe(self, ins, p, ops, idx, all_idx):
        t = p[-1]
        w = WIDTH[t]
        a = self.read(ops[1], idx) & MASK[w]
        pos = self.value(ops[2], idx, "u32").astype(np.uint64) & np.uint64(0xFF)
        ln = self.value(ops[3], idx, "u32").astype(np.uint64) & np.uint64(0xFF)
        if kind(t) == "s":
            raise EmulationError("bfe.s is not supported")
        field_ = np.where(pos >= w, np.uint64(0), a >> np.minimum(pos, np.uint64(w - 1)))
        m = np.where(ln >= 64, ~np.uint64(0), (np.uint64(1) << np.minimum(ln, np.uint64(63)))
                     - np.uint64(1))
        self.write(ops[0], idx, field_ & m & MASK[w])

    def op_prmt(self, ins, p, ops, idx, all_idx):
        if len(p) != 2:
            raise EmulationError(f"unsupported instruction {ins.opcode}")
        a = self.read(ops[1], idx) & MASK[32]
        b = self.read(ops[2], idx) & MASK[32]
        c = self.read(ops[3], idx)
        src = a | (b << np.uint64(32))
        out = np.zeros(len(idx), np.uint64)
        for i in range(4):
            sel = (c >> np.uint64(4 * i)) & np.uint64(0xF)
            byte = (src >> ((sel & np.uint64(7)) * np.uint64(8))) & np.uint64(0xFF)
            sign = np.where((byte >> np.uint64(7)) & np.uint64(1) == 1, np.uint64(0xFF),
                            np.uint64(0))
            byte = np.where(sel & np.uint64(8) != 0, sign, byte)
            out |= byte << np.uint64(8 * i)
        self.write(ops[0], idx, out)

    def op_selp(self, ins, p, ops, idx, all_idx):
        c = self.read(ops[3], idx) != 0
        self.write(ops[0], idx, np.where(c, self.read(ops[1], idx), self.read(ops[2], idx))
                   & MASK[WIDTH[p[-1]]])

    def op_setp(self, ins, p, ops, idx, all_idx):
        cmpop, t = p[1], p[-1]
        if len(p) != 3:
            raise EmulationError(f"unsupported instruction {ins.opcode}")
        a = self.value(ops[1], idx, t)
        b = self.value(ops[2], idx, t)
        if kind(t) == "f":
            nan = np.isnan(a) | np.isnan(b)
            if cmpop in ("num", "nan"):
                r = ~nan if cmpop == "num" else nan
            else:  # ordered (false with a NaN) or, with a "u" suffix, unordered (true)
                base = cmpop.rstrip("u")
                r = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b,
                     "ge": a >= b}[base]
                r = r | nan if cmpop.endswith("u") else r & ~nan
        else:
            if kind(t) == "b" or cmpop in ("lo", "ls", "hi", "hs"):
                a = self.read(ops[1], idx) & MASK[WIDTH[t]]
                b = self.read(ops[2], idx) & MASK[WIDTH[t]]
            r = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b,
                 "ge": a >= b, "lo": a < b, "ls": a <= b, "hi": a > b, "hs": a >= b}[cmpop]
        self.write(ops[0], idx, r.astype(np.uint64))

    # floating point
    def op_rcp(self, ins, p, ops, idx, all_idx):
        a = self.value(ops[1], idx, p[-1])
        self.put(ops[0], idx, np.float32(1) / a, p[-1])

    def op_sqrt(self, ins, p, ops, idx, all_idx):
        self.put(ops[0], idx, np.sqrt(self.value(ops[1], idx, p[-1])), p[-1])

    def op_ex2(self, ins, p, ops, idx, all_idx):
        a = self.value(ops[1], idx, "f32").astype(np.float64)
        self.put(ops[0], idx, np.exp2(a), "f32")

    def op_lg2(self, ins, p, ops, idx, all_idx):
        a = self.value(ops[1], idx, "f32").astype(np.float64)
        self.put(ops[0], idx, np.log2(a), "f32")

    def op_cvt(self, ins, p, ops, idx, all_idx):
        mods = [x for x in p[1:] if x in ("rn", "rz", "rm", "rp", "rni", "rzi", "rmi", "rpi",
                                          "ftz", "sat", "satfinite", "relu")]
        types = [x for x in p[1:] if x not in mods]
        dt, at = types[0], types[-1]
        if dt in ("bf16x2", "f16x2"):  # d = {cvt(a) upper, cvt(b) lower}
            et = dt[:-2]
            hi = to_raw(self.value(ops[1], idx, at), et, len(idx))
            lo = to_raw(self.value(ops[2], idx, at), et, len(idx))
            self.write(ops[0], idx, (hi << np.uint64(16)) | lo)
            return None
        if dt not in WIDTH or at not in WIDTH:
            raise EmulationError(f"unsupported instruction {ins.opcode}")
        a = self.value(ops[1], idx, at)
        if kind(dt) == "f":
            self.put(ops[0], idx, a.astype(np.float64) if kind(at) != "f" else a, dt)
            return None
        if kind(at) == "f":
            rnd = next((m for m in mods if m.endswith("i")), "rzi")
            a = {"rni": np.rint, "rzi": np.trunc, "rmi": np.floor, "rpi": np.ceil}[rnd](
                a.astype(np.float64))
            info = np.iinfo(SINT[WIDTH[dt]] if kind(dt) == "s" else UINT[WIDTH[dt]])
            a = np.clip(np.nan_to_num(a, nan=0.0), info.min, info.max)
            a = a.astype(np.int64 if kind(dt) == "s" else np.uint64)
            self.put(ops[0], idx, a, dt)
            return None
        # integer to integer: a holds the source's value (extended by its signedness); put
        # truncates it to the destination type and sign-extends a signed one.
        self.put(ops[0], idx, a, dt)
        return None

    # warp collectives
    def op_shfl(self, ins, p, ops, idx, all_idx):
        mode = p[2]
        warps = self.whole_warps(idx, "shfl.sync")
        d = ops[0]
        pred = None
        if d.kind == "reg" and "|" in d.name:
            dn, pn = d.name.split("|")
            d, pred = Operand("reg", name=dn), Operand("reg", name=pn)
        a = self.read(ops[1], idx).reshape(warps.shape)
        bval = self.read(ops[2], idx).reshape(warps.shape) & np.uint64(31)
        c = self.read(ops[3], idx).reshape(warps.shape)
        member = self.read(ops[4], idx) & MASK[32]
        if np.any(member != MASK[32]):
            raise EmulationError("shfl.sync with a partial member mask")
        lane = np.arange(32, dtype=np.int64)[None, :]
        bval = bval.astype(np.int64)
        cval = (c & np.uint64(31)).astype(np.int64)
        segmask = ((c >> np.uint64(8)) & np.uint64(31)).astype(np.int64)
        max_lane = (lane & segmask) | (cval & ~segmask)
        min_lane = lane & segmask
        if mode == "up":
            j = lane - bval
            ok = j >= max_lane
        elif mode == "down":
            j = lane + bval
            ok = j <= max_lane
        elif mode == "bfly":
            j = lane ^ bval
            ok = j <= max_lane
        elif mode == "idx":
            j = min_lane | (bval & ~segmask)
            ok = j <= max_lane
        else:
            raise EmulationError(f"unsupported instruction {ins.opcode}")
        j = np.where(ok, j, lane)
        out = np.take_along_axis(a, j, axis=1)
        self.write(d, idx, out.reshape(-1))
        if pred is not None:
            self.write(pred, idx, ok.reshape(-1).astype(np.uint64))

    def op_ldmatrix(self, ins, p, ops, idx, all_idx):
        warps = self.whole_warps(idx, "ldmatrix")
        num = int(next(x for x in p if x.startswith("x"))[1:])
        trans = "trans" in p
        addr = self.address(ops[1], idx).reshape(warps.shape)
        w = warps.shape[0]
        rows = np.zeros((w, num, 8, 8), np.uint16)
        for i in range(num):
            a = addr[:, 8 * i:8 * i + 8].reshape(-1)
            lanes = warps[:, 8 * i:8 * i + 8].reshape(-1)
            data = self.load_bytes("shared", a, lanes, 16, ins.opcode)
            rows[:, i] = np.ascontiguousarray(data).view(np.uint16).reshape(w, 8, 8)
        t = np.arange(32)
        r, c = t // 4, 2 * (t % 4)
        for i, item in enumerate(ops[0].items):
            m = rows[:, i]
            if trans:
                lo, hi = m[:, c, r], m[:, c + 1, r]
            else:
                lo, hi = m[:, r, c], m[:, r, c + 1]
            self.write(item, idx, (lo.astype(np.uint64) | (hi.astype(np.uint64) << np.uint64(16)))
                       .reshape(-1))

    def op_mma(self, ins, p, ops, idx, all_idx):
        if ins.opcode not in ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
                              "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"):
            raise EmulationError(f"unsupported instruction {ins.opcode}")
        et = p[7]
        warps = self.whole_warps(idx, "mma.sync")
        w = warps.shape[0]
        dst, a_op, b_op, c_op = ops

        def halves(items):
            regs = np.stack([self.read(x, idx).reshape(w, 32) for x in items], axis=2)
            lo = to_value(regs & np.uint64(0xFFFF), et).astype(np.float64)
            hi = to_value(regs >> np.uint64(16), et).astype(np.float64)
            return lo, hi

        t = np.arange(32)
        g, q = t // 4, t % 4
        a_lo, a_hi = halves(a_op.items)  # [w, 32, 4]
        A = np.zeros((w, 16, 16))
        for reg, (ro, co) in enumerate([(0, 0), (8, 0), (0, 8), (8, 8)]):
            A[:, g + ro, 2 * q + co] = a_lo[:, :, reg]
            A[:, g + ro, 2 * q + co + 1] = a_hi[:, :, reg]
        b_lo, b_hi = halves(b_op.items)
        B = np.zeros((w, 16, 8))
        for reg, ko in enumerate([0, 8]):
            B[:, 2 * q + ko, g] = b_lo[:, :, reg]
            B[:, 2 * q + ko + 1, g] = b_hi[:, :, reg]
        C = np.zeros((w, 16, 8))
        cregs = [to_value(self.read(x, idx).reshape(w, 32), "f32").astype(np.float64)
                 for x in c_op.items]
        places = [(0, 0), (0, 1), (8, 0), (8, 1)]
        for reg, (ro, co) in enumerate(places):
            C[:, g + ro, 2 * q + co] = cregs[reg]
        D = (A @ B + C).astype(np.float32)
        for reg, (ro, co) in enumerate(places):
            self.put(dst.items[reg], idx, D[:, g + ro, 2 * q + co].reshape(-1), "f32")


def launch(kernel: Kernel, grid, block, smem_bytes: int, params: list[bytes],
           memory: GlobalMemory, max_steps: int = 50_000_000) -> int:
    """Runs one launch to completion, writing global memory back; returns the steps taken."""
    m = Machine(kernel, tuple(grid), tuple(block), smem_bytes, params, memory)
    m.run(max_steps)
    if m.pending:
        raise EmulationError(f"{kernel.name}: cp.async copies never waited for")
    memory.write_back()
    return m.steps
