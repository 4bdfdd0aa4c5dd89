#!/usr/bin/env python3
"""Checks the dynamic symbols of libmmrec.so: every function of the C header
is exported, and nothing is exported but the C API (mmrec_*) and the C++ API
(namespace mmrec, declared in the installed headers): no std:: or other
library's template instantiations, no internals.

    check_exports.py LIBMMREC.so MMREC_C_H
"""
import re
import subprocess
import sys

# Namespaces of mmrec that are internal (declared only in headers that are not installed).
INTERNAL = ("mmrec::capi::", "mmrec::prof::", "mmrec::kernels::ref::", "mmrec::kernels::hwy",
            "mmrec::kernels::detail", "mmrec::tools::", "mmrec::N_", "mmrec::HWY_NAMESPACE")
# Mangled prefixes of entities in namespace mmrec: functions and data
# (_ZN5mmrec, const members _ZNK5mmrec, local statics _ZZN5mmrec), typeinfo,
# its name, vtables, guard variables, thread_local wrappers.
CXX_API = re.compile(r"^_Z(N|NK|ZN|ZNK|TIN|TSN|TVN|GVN|GVZN|THN|TWN)5mmrec")


def dynamic_symbols(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", "--format=posix", lib], check=True, capture_output=True,
                         text=True).stdout
    syms = []
    for line in out.splitlines():
        name, kind = line.split()[:2]
        if kind == "A":  # the version node (MMREC_0)
            continue
        syms.append(re.sub(r"@@?MMREC_0$", "", name))
    return syms


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def main(lib, header):
    mangled = dynamic_symbols(lib)
    c_api = sorted(set(re.findall(r"\b(mmrec_[a-z0-9_]+)\s*\(", open(header).read())))
    errors = []
    missing = [f for f in c_api if f not in mangled]
    if missing:
        errors.append("C API functions not exported: " + ", ".join(missing))
    c_syms = [s for s in mangled if not s.startswith("_Z")]
    for s in c_syms:
        if s not in c_api:
            errors.append("exported C symbol not in mmrec_c.h: " + s)
    cxx = [s for s in mangled if s.startswith("_Z")]
    for s, d in zip(cxx, demangle(cxx)):
        if not CXX_API.match(s):
            errors.append("exported symbol outside namespace mmrec: " + d)
        elif any(p in d.split("(")[0] for p in INTERNAL) or d.startswith("std::"):
            errors.append("internal symbol exported: " + d)
    if errors:
        print("\n".join(errors[:40]), file=sys.stderr)
        print(f"check_exports: {len(errors)} problem(s) in {lib}", file=sys.stderr)
        return 1
    print(f"check_exports: {len(c_syms)} C API and {len(cxx)} C++ API symbols, nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
