#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Plots migration time against the number of flows from bench/results.json into an SVG.

    plot_migration.py RESULTS_JSON OUT_SVG

Log-log: the whole migration of a VM with N tracked connections (migrate_total_seconds_<n>;
for 1M migrate_1m_inprocess_total_seconds, the same in-process measure), and the freeze with N entries changed in the
final round (migrate_freeze_ms_p99_<n> and the median of the same repetitions,
migrate_freeze_ms_median_<n>), with the issue's targets. scripts/bench.sh calls it after writing
results.json; a missing figure is left out of its series. Needs matplotlib (python3-matplotlib,
scripts/install_deps.sh).
"""
import json
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

SIZES = [(1_000, "1k"), (10_000, "10k"), (100_000, "100k"), (1_000_000, "1m")]


def series(results, key_of):
    xs, ys = [], []
    for n, tag in SIZES:
        v = results.get(key_of(tag))
        if isinstance(v, (int, float)):
            xs.append(n)
            ys.append(v)
    return xs, ys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        r = json.load(f)
    total = series(r, lambda t: "migrate_1m_inprocess_total_seconds" if t == "1m"
                   else f"migrate_total_seconds_{t}")
    freeze = series(r, lambda t: f"migrate_freeze_ms_p99_{t}")
    freeze_med = series(r, lambda t: f"migrate_freeze_ms_median_{t}")
    total_ms = (total[0], [s * 1000 for s in total[1]])

    # svg.hashsalt and no date: the same numbers give the same file (diffs stay readable).
    plt.rcParams["svg.hashsalt"] = "baton"
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(*total_ms, "o-", color="tab:blue", label="whole migration (N tracked flows)")
    ax.plot(*freeze, "s-", color="tab:red", label="freeze, p99 (N flows changed in the final round)")
    ax.plot(*freeze_med, "s:", color="tab:red", alpha=0.6, markerfacecolor="none",
            label="freeze, median of the same repetitions")
    ax.plot([1_000_000], [2000], "x", color="tab:blue", markersize=9,
            label="target: 1M flows in < 2 s")
    ax.plot([10_000, 100_000], [1, 5], "x", color="tab:red", markersize=9,
            label="targets: freeze < 1 ms (10k), < 5 ms (100k)")
    # Whole-migration labels up and left, freeze labels down and right: the lines cross.
    for x, y in zip(*total_ms):
        ax.annotate(f"{y:,.3g} ms", (x, y), textcoords="offset points", xytext=(-6, 6),
                    ha="right", fontsize=8, color="tab:blue")
    for x, y in zip(*freeze):
        ax.annotate(f"{y:,.3g} ms", (x, y), textcoords="offset points", xytext=(6, -12),
                    fontsize=8, color="tab:red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(400, 2.5e6)
    ax.set_xlabel("flows (N)")
    ax.set_ylabel("time, ms")
    ax.set_title("Baton live handoff: time against number of flows (in-process, no TLS)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(sys.argv[2], format="svg", metadata={"Date": None})


if __name__ == "__main__":
    main()
