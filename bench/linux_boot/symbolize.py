#!/usr/bin/env python3
"""Maps a `coalesce run --rip-samples` file onto kernel symbols from System.map: where guest time went.

Usage: symbolize.py SYSTEM_MAP SAMPLES [TOP]"""
import bisect
import collections
import sys


def load_symbols(path):
    syms = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def profile(system_map, samples_path):
    """Returns (total samples, Counter symbol -> samples)."""
    addrs, names = load_symbols(system_map) if system_map else ([], [])
    counts, total = collections.Counter(), 0
    with open(samples_path) as f:
        for line in f:
            rip_text, n_text = line.split()
            rip, n = int(rip_text, 16), int(n_text)
            total += n
            if rip < 0x800000000000:
                counts["(user space)"] += n
                continue
            i = bisect.bisect_right(addrs, rip) - 1
            counts[names[i] if i >= 0 else hex(rip)] += n
    return total, counts


if __name__ == "__main__":
    total, counts = profile(sys.argv[1], sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    print(f"{total} samples")
    for name, n in counts.most_common(top):
        print(f"{n:8d} {100.0 * n / max(total, 1):5.1f}%  {name}")
