#!/usr/bin/env python3
"""Compares two safetensors files of f32 tensors: the relative distance of
the whole parameter vectors, ||a - b|| / ||a|| (L2 over every tensor), must
be within the tolerance; names and shapes must match (else exit 1). Also
prints the worst tensor by max|a - b| / max|a|.
  python3 tests/compare_weights.py A.safetensors B.safetensors [--tol 1e-6]"""
import json
import math
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    out = {}
    for name, t in header.items():
        lo, hi = t["data_offsets"]
        if t["dtype"] != "F32":
            sys.exit(f"compare_weights: {path}: {name} is {t['dtype']}, not F32")
        out[name] = (t["shape"], struct.unpack(f"<{(hi - lo) // 4}f", body[lo:hi]))
    return out


def main():
    args = sys.argv[1:]
    tol = 1e-6
    if "--tol" in args:
        i = args.index("--tol")
        tol = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    a, b = read(args[0]), read(args[1])
    if sorted(a) != sorted(b):
        print(f"compare_weights: different tensors: {sorted(set(a) ^ set(b))}")
        return 1
    worst, where, dist2, norm2 = 0.0, "", 0.0, 0.0
    for name in sorted(a):
        (sa, va), (sb, vb) = a[name], b[name]
        if sa != sb:
            print(f"compare_weights: {name}: shape {sa} vs {sb}")
            return 1
        dist2 += sum((x - y) ** 2 for x, y in zip(va, vb))
        norm2 += sum(x * x for x in va)
        scale = max((abs(x) for x in va), default=0.0) or 1.0
        d = max((abs(x - y) for x, y in zip(va, vb)), default=0.0) / scale
        if d > worst:
            worst, where = d, name
    rel = math.sqrt(dist2 / norm2) if norm2 > 0 else math.sqrt(dist2)
    print(f"compare_weights: {len(a)} tensors, relative distance {rel:.3g} (tolerance {tol:g}); "
          f"worst tensor {where or '-'}: max relative difference {worst:.3g}")
    return 0 if rel <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
