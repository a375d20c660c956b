"""benchmarks/run.py runs end to end and writes the JSON it promises.

No timing assertions: the numbers of a smoke run on a shared machine mean nothing.
Only that every section ran, the JSON has its keys, and what must be positive is.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
CELLS = ["rnn", "lstm", "gru"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One quick run, shared by the tests below: (completed process, parsed JSON)."""
    out = tmp_path_factory.mktemp("bench") / "result.json"
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--no-torch", "--shapes", "tiny", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, f"run.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text())


def positive(d, *keys):
    for k in keys:
        assert isinstance(d[k], (int, float)) and d[k] > 0, f"{k} = {d[k]!r} in {d}"


@pytest.mark.slow
def test_quick_run_writes_every_section(smoke):
    proc, r = smoke
    assert {"schema", "created", "settings", "machine", "training", "per_op", "memory", "render",
            "errors", "duration_s"} <= r.keys()
    assert r["errors"] == []
    assert r["settings"]["quick"] is True and r["settings"]["torch"] is False
    assert r["settings"]["shapes"] == ["tiny"] and r["settings"]["cells"] == CELLS
    m = r["machine"]
    assert m["numpy"] and m["cpu"] and m["cores"] >= 1
    assert m["threads_requested"] == "1" and m["thread_env"]["OPENBLAS_NUM_THREADS"] == "1"
    for section in ("Training step", "Per-op overhead", "Backward per node", "Activations kept for backward",
                    "Backward memory growth", "BPTT picture", "results written to"):
        assert section in proc.stdout


@pytest.mark.slow
def test_training_rows_have_positive_numbers_and_equal_first_losses(smoke):
    rows = smoke[1]["training"]
    assert [(row["cell"], row["shape"]) for row in rows] == [(c, "tiny") for c in CELLS]
    for row in rows:
        assert (row["B"], row["T"], row["H"], row["V"]) == (1, 25, 100, 65)
        positive(row, "engine_ms", "by_hand_ms", "chars_per_s", "peak_bytes", "by_hand_peak_bytes", "op_nodes",
                 "forward_us_per_node", "backward_us_per_node")
        positive(row["ratio"], "ratio", "p25", "p75")
        assert row["ratio"]["p25"] <= row["ratio"]["ratio"] <= row["ratio"]["p75"]
        assert not any("replay" in key for key in row)
        assert row["chars_per_s"] == pytest.approx(25 / (row["engine_ms"] / 1e3))
        assert row["target"] == 2.0 and row["ok"] == (row["ratio"]["ratio"] <= 2.0)
        assert row["rounds"] == 3 and row["calls"] == 2
        positive(row["cold_ratio"], "ratio", "p25", "p75")
        positive(row["engine_phases_ms"], "forward", "backward", "update")
        positive(row["by_hand_phases_ms"], "forward", "backward", "update")
        assert "torch_ops" not in row and "torch_fused" not in row
        losses = row["first_loss"]
        assert losses["engine"] == pytest.approx(losses["by_hand"], rel=1e-5)
        assert losses["by_hand"] == pytest.approx(4.17, abs=0.05)      # ~ log(65): untrained


@pytest.mark.slow
def test_per_op_memory_and_render_sections(smoke):
    r = smoke[1]
    for op in ("a + b", "a @ W", "a.tanh()"):
        positive(r["per_op"]["forward"][op], "numpy_us", "engine_us", "no_grad_us", "calls")
    for op in ("a + b", "a @ W"):
        positive(r["per_op"]["backward"][op], "numpy_us", "engine_us", "nodes")
    # the 2 µs, scaled by this run's np.add against the 0.57 µs
    per_op = r["per_op"]
    assert per_op["scaled_target_us"] == pytest.approx(2.0 * per_op["forward"]["a + b"]["numpy_us"] / 0.57)
    assert f"so the same target here is {per_op['scaled_target_us']:.1f} µs" in smoke[0].stdout
    acts = r["memory"]["activations"]
    assert [a["cell"] for a in acts] == CELLS
    for a in acts:
        positive(a, "engine_bytes", "by_hand_bytes", "by_hand_cache_nbytes", "ratio")
    growth = r["memory"]["growth"]
    assert [g["T"] for g in growth] == [20, 40, 80]
    for g in growth:
        positive(g, "activations_bytes", "bytes_per_step", "by_hand_bytes", "backward_peak_bytes", "param_grad_bytes")
    # activations grow with T (a graph twice as long keeps more alive)
    assert growth[0]["activations_bytes"] < growth[1]["activations_bytes"] < growth[2]["activations_bytes"]
    render = r["render"]
    assert "skipped" in render or render["draw_s"] > 0


@pytest.mark.slow
def test_compare_of_a_run_with_itself_is_all_ones(smoke):
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.report import compare
    finally:
        sys.path.remove(str(ROOT))
    r = smoke[1]
    text = compare(r, r)
    body = [line for line in text.splitlines() if line.startswith(("rnn", "lstm", "gru"))]
    assert len(body) == 6                        # 3 training rows + 3 activation rows
    training = body[:3]
    for line in training:
        assert line.split()[2:6] == ["1.00"] * 4  # engine ms, by-hand ms, ratio, peak MB


def test_bad_options_name_what_is_allowed():
    proc = subprocess.run([sys.executable, str(RUN), "--only", "lstm,transformer"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0
    assert "--only: expected a comma-separated subset of rnn,lstm,gru, got 'lstm,transformer'" in proc.stderr
    proc = subprocess.run([sys.executable, str(RUN), "--threads", "zero"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "--threads: expected a positive number or 'default', got 'zero'" in proc.stderr
    proc = subprocess.run([sys.executable, str(RUN), "--calls", "0"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "--calls: expected a positive number, got 0" in proc.stderr
    proc = subprocess.run([sys.executable, str(RUN), "--profile", "rnn:tiny:fast"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "--profile: expected CELL:SHAPE with CELL in" in proc.stderr and "'rnn:tiny:fast'" in proc.stderr


def test_profile_of_the_step_names_the_fused_cell_op():
    proc = subprocess.run([sys.executable, str(RUN), "--profile", "lstm:tiny"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "20 engine training steps, lstm tiny" in proc.stdout
    assert "cell_ops.py" in proc.stdout        # LSTMStep.forward / backward are among the top functions


def test_per_op_overhead_with_the_torch_reference():
    """With torch, the per-op loops also run on torch tensors that require grad (the issue's reference)."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.overhead import forward_overhead
    finally:
        sys.path.remove(str(ROOT))
    result = forward_overhead(n=20, repeats=1, torch=True)
    assert list(result) == ["a + b", "a @ W", "a.tanh()"]
    for r in result.values():
        positive(r, "numpy_us", "engine_us", "torch_us")
        assert r["torch_overhead_us"] == pytest.approx(r["torch_us"] - r["numpy_us"])


def _timing():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import timing
    finally:
        sys.path.remove(str(ROOT))
    return timing


def test_alternate_runs_each_contender_calls_times_in_a_row_and_keeps_its_first_and_last():
    """A round is A A B B (calls=2), the next B B A A: the warm time is each contender's second call
    (after a call of its own), the cold one its first (after the other contender)."""
    timing = _timing()
    order, clock = [], [0.0]

    def contender(name, seconds):
        def step():
            order.append(name)
            clock[0] += seconds[len([o for o in order if o == name]) % 2]   # first call of a round: the slow one
        return step

    timing.perf_counter, saved = (lambda: clock[0]), timing.perf_counter
    try:
        warm, cold = timing.alternate({"a": contender("a", (1.0, 3.0)), "b": contender("b", (2.0, 5.0))},
                                      warmup=1, min_rounds=3, max_rounds=3, budget=0.0, calls=2)
    finally:
        timing.perf_counter = saved
    assert order == ["a", "a", "b", "b", "b", "b", "a", "a"] * 2  # one warm-up round, then three timed
    assert warm == {"a": [1.0] * 3, "b": [2.0] * 3} and cold == {"a": [3.0] * 3, "b": [5.0] * 3}
    assert timing.paired_ratio(warm["a"], warm["b"])["ratio"] == 0.5
    one_warm, one_cold = timing.alternate({"a": lambda: None}, warmup=0, min_rounds=2, max_rounds=2, calls=1)
    assert one_warm == one_cold and len(one_warm["a"]) == 2        # one call per round: both lists hold it
