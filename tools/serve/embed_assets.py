#!/usr/bin/env python3
"""Writes a C++ source holding the dashboard's files as byte arrays.

usage: embed_assets.py OUT.cpp FILE...   (index.html is served at "/", the
other files at /assets/<name>)"""
import os
import sys

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}


def main():
    out, files = sys.argv[1], sys.argv[2:]
    lines = ['#include "serve/dashboard.h"', "", "namespace mmrec::serve {", "namespace {"]
    entries = []
    for i, path in enumerate(files):
        name = os.path.basename(path)
        data = open(path, "rb").read()
        body = ",".join(str(b) for b in data)
        lines.append(f"const unsigned char a{i}[] = {{{body}}};")
        url = "/" if name == "index.html" else "/assets/" + name
        ctype = TYPES[os.path.splitext(name)[1]]
        entries.append(f'  {{"{url}", "{ctype}", a{i}, {len(data)}}},')
    lines += ["}  // namespace", "", "const Asset kDashboardAssets[] = {"] + entries + ["};"]
    lines += [f"const unsigned long kDashboardAssetCount = {len(files)};", "", "}  // namespace mmrec::serve", ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
