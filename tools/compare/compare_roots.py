"""Compares two output roots of run_all_commands.sh: every file byte for byte, except HDF5 files,
which hold object modification times: those are compared by content with h5py (every group,
dataset's dtype, shape and bytes, attribute, and which names are hard links to one object).
Prints each difference; exit status 1 when there is one.
    python tools/compare/compare_roots.py ROOT_A ROOT_B"""
import filecmp
import os
import sys

import h5py
import numpy as np


def h5_content(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = ("dataset", obj.dtype.str, obj.shape, obj[()].tobytes() if obj.size else b"", attrs,
                             h5py.h5o.get_info(obj.id).rc)
            else:
                out[name] = ("group", attrs)
        f.visititems(visit)
        out["/"] = ("root", {k: np.asarray(v).tobytes() for k, v in f.attrs.items()})
    return out


def main(a, b):
    differences = 0
    for dirpath, dirnames, filenames in os.walk(a):
        rel = os.path.relpath(dirpath, a)
        other = os.path.join(b, rel)
        if not os.path.isdir(other):
            print("only in", a, rel); differences += 1; continue
        mine, theirs = set(dirnames + filenames), set(os.listdir(other))
        for name in sorted(mine ^ theirs):
            print("only in", a if name in mine else b, os.path.join(rel, name)); differences += 1
        for name in sorted(set(filenames) & theirs):
            pa, pb = os.path.join(dirpath, name), os.path.join(other, name)
            same = h5_content(pa) == h5_content(pb) if name.endswith(".h5") else filecmp.cmp(pa, pb, shallow=False)
            if not same:
                print("differs", os.path.join(rel, name)); differences += 1
    print(differences, "difference(s)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
