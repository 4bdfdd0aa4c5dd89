#!/usr/bin/env python3
"""Generates text from a checkpoint through the C API with ctypes.

    generate.py MODEL.safetensors PROMPT [TOKENS] [--lib PATH]

The library is found by --lib, $MMREC_LIBRARY, or the system's linker path
(libmmrec.so.0). Python is only a host here: the runtime does not need it.
"""
import ctypes
import ctypes.util
import os
import sys

OK = 0


def load_library(path=None):
    path = path or os.environ.get("MMREC_LIBRARY") or ctypes.util.find_library("mmrec") or "libmmrec.so.0"
    lib = ctypes.CDLL(path)
    P = ctypes.c_void_p
    sigs = {
        "mmrec_version": (ctypes.c_char_p, []),
        "mmrec_last_error": (ctypes.c_char_p, []),
        "mmrec_model_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(P)]),
        "mmrec_model_free": (None, [P]),
        "mmrec_model_vocab_size": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_int32)]),
        "mmrec_tokenize": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int32),
                                          ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
        "mmrec_detokenize": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_char_p,
                                            ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
        "mmrec_state_create": (ctypes.c_int, [P, ctypes.POINTER(P)]),
        "mmrec_state_free": (None, [P]),
        "mmrec_state_feed": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t]),
        "mmrec_state_sample": (ctypes.c_int, [P, ctypes.c_float, ctypes.c_int32, ctypes.POINTER(ctypes.c_int32)]),
        "mmrec_state_seed": (ctypes.c_int, [P, ctypes.c_uint64]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


class MmrecError(RuntimeError):
    pass


def call(lib, status):
    if status != OK:
        raise MmrecError(lib.mmrec_last_error().decode("utf-8", "replace"))


def generate(lib, checkpoint, prompt, tokens, temperature=0.8, top_k=40, seed=1):
    model, state = ctypes.c_void_p(), ctypes.c_void_p()
    call(lib, lib.mmrec_model_load(checkpoint.encode(), ctypes.byref(model)))
    try:
        call(lib, lib.mmrec_state_create(model, ctypes.byref(state)))
        call(lib, lib.mmrec_state_seed(state, seed))
        data = prompt.encode()
        ids = (ctypes.c_int32 * (len(data) + 1))()
        n = ctypes.c_size_t()
        call(lib, lib.mmrec_tokenize(model, data, len(data), ids, len(ids), ctypes.byref(n)))
        call(lib, lib.mmrec_state_feed(state, ids, n.value))
        out = bytearray()
        nxt = ctypes.c_int32()
        buf = ctypes.create_string_buffer(256)
        for _ in range(tokens):
            call(lib, lib.mmrec_state_sample(state, temperature, top_k, ctypes.byref(nxt)))
            call(lib, lib.mmrec_detokenize(model, ctypes.byref(nxt), 1, buf, len(buf), ctypes.byref(n)))
            out += buf.raw[: n.value]
            call(lib, lib.mmrec_state_feed(state, ctypes.byref(nxt), 1))
        return prompt + out.decode("utf-8", "replace")
    finally:
        lib.mmrec_state_free(state)
        lib.mmrec_model_free(model)


def main(argv):
    lib_path = None
    if "--lib" in argv:
        i = argv.index("--lib")
        if i + 1 >= len(argv):
            print("generate.py: --lib: missing value", file=sys.stderr)
            return 2
        lib_path = argv[i + 1]
        del argv[i : i + 2]
    if len(argv) not in (3, 4):
        print("usage: generate.py MODEL.safetensors PROMPT [TOKENS] [--lib PATH]", file=sys.stderr)
        return 2
    lib = load_library(lib_path)
    try:
        print(generate(lib, argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 100))
    except MmrecError as e:
        print(f"generate.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
