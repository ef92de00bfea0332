#!/usr/bin/env python3
"""Instructions per operation by function, from the two callgrind profiles that
ir_per_op.sh keeps (KEEP=PREFIX): PREFIX.W.D.1 (OPS operations) and PREFIX.W.D.2 (2 x OPS).

    bench/engine/ir_diff.py PREFIX.W.D OPS [--inclusive] [--top N]
"""
import subprocess
import sys


def per_function(path, inclusive):
    args = ["callgrind_annotate", "--threshold=100", path]
    if inclusive:
        args.insert(1, "--inclusive=yes")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    costs = {}
    started = False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started or not line.strip() or line.startswith("-"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].replace(",", "").isdigit():
            continue
        name = line.split(")", 1)[1].strip() if "(" in parts[1] else parts[1]
        name = name.split(" [")[0]
        costs[name] = costs.get(name, 0) + int(parts[0].replace(",", ""))
    return costs


def main():
    prefix, ops = sys.argv[1], int(sys.argv[2])
    inclusive = "--inclusive" in sys.argv
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 25
    a = per_function(prefix + ".1", inclusive)
    b = per_function(prefix + ".2", inclusive)
    diff = {k: (b.get(k, 0) - a.get(k, 0)) / ops for k in set(a) | set(b)}
    total = sum(v for v in diff.values() if v > 0) if not inclusive else None
    for name, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        share = f" {100 * v / total:5.1f}%" if total else ""
        print(f"{v:9.1f}{share}  {name[:140]}")


if __name__ == "__main__":
    main()
