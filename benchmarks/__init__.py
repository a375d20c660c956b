"""Benchmarks of tinygrad_rnn: run ``python benchmarks/run.py --help``.

    run.py       the entry point: options, the order of the sections, JSON, --compare
    machine.py   what the run measured on: CPU, cores, NumPy + BLAS, torch, threads
    timing.py    alternating runs, medians, paired ratios, time boxes
    steps.py     one training step four ways: the engine, by hand, torch ops, torch.nn fused
    overhead.py  per-op cost above the bare NumPy call, backward cost per node
    memory.py    activations kept for backward, growth with T, release after backward
    picture.py   render time of the cell-level BPTT picture
    report.py    the printed tables and the comparison of two runs
"""
