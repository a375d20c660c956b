"""Truncated-BPTT data helpers: batchify, tbptt_batches, CharVocab, and the documented loop pattern."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn.autograd import GraphFreedError
from tinygrad_rnn.data import CharVocab, batchify, tbptt_batches

ALPHABET = "abcdefghijklmnopqrstuvwx"  # the docstring's 24-token example


def letters(ids):
    return ["".join(ALPHABET[i] for i in row) for row in np.asarray(ids)]


# --- batchify -----------------------------------------------------------------------------------
def test_batchify_cuts_contiguous_rows():
    ids = np.arange(24)
    streams = batchify(ids, 2)
    assert streams.dtype == np.int64 and streams.shape == (2, 12)
    assert letters(streams) == ["abcdefghijkl", "mnopqrstuvwx"]
    assert letters(batchify(np.arange(24), 3)) == ["abcdefgh", "ijklmnop", "qrstuvwx"]


def test_batchify_drops_the_remainder_and_accepts_lists_and_tensors(backend):
    ids = list(range(23))
    for tokens in (ids, np.array(ids, dtype=np.int32), tg.tensor(ids)):
        assert letters(batchify(tokens, 4)) == ["abcde", "fghij", "klmno", "pqrst"]  # 23 // 4 = 5 per row


def test_batchify_copies():
    ids = np.arange(10)
    streams = batchify(ids, 2)
    streams[0, 0] = 99
    assert ids[0] == 0


@pytest.mark.parametrize("tokens,batch_size,error,message", [
    (np.zeros((2, 5), dtype=np.int64), 2, ValueError, r"expected a 1-D token stream, got shape \(2, 5\)"),
    (np.arange(10), 0, ValueError, "batch_size must be a positive int, got 0"),
    (np.arange(10), 2.0, ValueError, "batch_size must be a positive int, got 2.0"),
    (np.arange(10), 6, ValueError, "10 tokens are too few for 6 streams of at least 2 tokens"),
    (np.linspace(0, 1, 10), 2, TypeError, "batchify: tokens: expected integer token ids, got dtype float64"),
])
def test_batchify_errors(tokens, batch_size, error, message):
    with pytest.raises(error, match=message):
        batchify(tokens, batch_size)


# --- tbptt_batches --------------------------------------------------------------------------------
def test_tbptt_batches_docstring_example(backend):
    chunks = list(tbptt_batches(batchify(np.arange(24), 2), 4))
    assert [(letters(x.numpy()), letters(y.numpy())) for x, y in chunks] == [
        (["abcd", "mnop"], ["bcde", "nopq"]),
        (["efgh", "qrst"], ["fghi", "rstu"]),
        (["ijk", "uvw"], ["jkl", "vwx"]),
    ]
    x, y = chunks[0]
    assert isinstance(x, tg.Tensor) and x.dtype == "int64" and x.device == backend and x.shape == (2, 4)
    assert not x.requires_grad


def test_tbptt_batches_backend_argument():
    (x, y), *_ = tbptt_batches(batchify(np.arange(24), 2), 4, backend="array_api_strict")
    assert x.device == y.device == "array_api_strict"


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 200), b=st.integers(1, 8), t=st.integers(1, 30))
def test_chunks_tile_the_streams(n, b, t):
    """x chunks laid side by side are every stream without its last token; y chunks, without its first."""
    if n // b < 2:
        with pytest.raises(ValueError, match="too few"):
            batchify(np.arange(n), b)
        return
    streams = batchify(np.arange(n), b)
    chunks = list(tbptt_batches(streams, t))
    xs = np.concatenate([x.numpy() for x, _ in chunks], axis=1)
    ys = np.concatenate([y.numpy() for _, y in chunks], axis=1)
    np.testing.assert_array_equal(xs, streams[:, :-1])
    np.testing.assert_array_equal(ys, streams[:, 1:])
    assert all(x.shape == (b, t) for x, _ in chunks[:-1]) and 1 <= chunks[-1][0].shape[1] <= t
    np.testing.assert_array_equal(streams.ravel(), np.arange(b * (n // b)))  # row-major = original order


@pytest.mark.parametrize("streams,seq_len,message", [
    (np.arange(10), 3, r"expected streams of shape \(B, L\) \(see batchify\), got shape \(10,\)"),
    (np.zeros((2, 5), dtype=np.int64), 0, "seq_len must be a positive int, got 0"),
])
def test_tbptt_batches_errors(streams, seq_len, message):
    with pytest.raises(ValueError, match=message):
        list(tbptt_batches(streams, seq_len))


# --- CharVocab -------------------------------------------------------------------------------------
def test_char_vocab():
    v = CharVocab("hello, world")
    assert v.chars == [" ", ",", "d", "e", "h", "l", "o", "r", "w"] and len(v) == 9
    ids = v.encode("world hello")
    assert ids.dtype == np.int64 and ids.tolist() == [8, 6, 7, 5, 2, 0, 4, 3, 5, 5, 6]
    assert v.decode(ids) == "world hello"
    assert v.decode(tg.tensor(ids)) == "world hello"
    assert v.decode([[4, 3], [5, 5]]) == "hell"
    assert v.stoi["h"] == 4 and v.itos[4] == "h"
    assert v.encode("").shape == (0,) and v.decode([]) == ""


def test_char_vocab_errors():
    v = CharVocab("abc")
    with pytest.raises(ValueError, match=r"character 'z' \(position 2\) is not in the vocabulary of 3 characters"):
        v.encode("abzc")
    with pytest.raises(IndexError, match=r"id 3 is out of range; expected ids in \[0, 3\)"):
        v.decode([0, 3])
    with pytest.raises(IndexError, match="id -1 is out of range"):
        v.decode(np.array([-1]))
    with pytest.raises(ValueError, match="the text is empty"):
        CharVocab("")
    with pytest.raises(TypeError, match="expected a str, got list"):
        CharVocab(["a"])


def test_tinyshakespeare(shakespeare_path):
    text = shakespeare_path.read_text()
    v = CharVocab(text)
    assert len(v) == 65  # char-rnn's vocabulary for this file
    ids = v.encode(text)
    assert v.decode(ids[:100]) == text[:100]
    streams = batchify(ids, 50)
    assert streams.shape == (50, len(text) // 50)


# --- the documented loop ---------------------------------------------------------------------------------
def tbptt_loss(emb, rnn, head, x, y, h, V):
    out, h = rnn(emb(x.T), h)                      # (T, B, H)
    logp = head(out).log_softmax(-1).reshape(-1, V)
    targets = y.T.reshape(-1)
    return -logp[tg.arange(logp.shape[0]), targets].mean(), h


def test_tbptt_loop_with_detach_learns(backend):
    text = "the cat sat on the mat. " * 12
    vocab = CharVocab(text)
    V = len(vocab)
    streams = batchify(vocab.encode(text), 4)
    emb, rnn, head = nn.Embedding(V, 8), nn.LSTM(8, 16), nn.Linear(16, V)
    params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
    opt = tg.optim.Adam(params, lr=0.02)
    epoch_losses = []
    for epoch in range(8):
        h, losses = None, []
        for x, y in tbptt_batches(streams, 8):
            loss, h = tbptt_loss(emb, rnn, head, x, y, h, V)
            opt.zero_grad()
            loss.backward()
            opt.step()
            h = tuple(s.detach() for s in h)
            assert all(s.grad_fn is None for s in h)  # the next chunk starts a fresh graph
            losses.append(loss.item())
        epoch_losses.append(np.mean(losses))
    assert epoch_losses[-1] < 0.5 * epoch_losses[0]


def test_forgetting_detach_fails_on_the_second_chunk_with_a_hint():
    """The docstring's warning: without detach() the second backward reaches the freed first graph."""
    vocab = CharVocab("abcdefgh")
    streams = batchify(vocab.encode("abcdefgh" * 4), 2)
    emb, rnn, head = nn.Embedding(8, 4), nn.GRU(4, 5), nn.Linear(5, 8)
    h = None
    chunks = tbptt_batches(streams, 3)
    x, y = next(chunks)
    loss, h = tbptt_loss(emb, rnn, head, x, y, h, 8)
    loss.backward()
    x, y = next(chunks)
    loss, h = tbptt_loss(emb, rnn, head, x, y, h, 8)
    with pytest.raises(GraphFreedError, match=r"h = h.detach\(\)"):
        loss.backward()


def test_the_module_docstring_loop_runs():
    """The loop printed in tinygrad_rnn.data's docstring is real code."""
    import textwrap

    import tinygrad_rnn.data as data
    doc = data.__doc__
    block = textwrap.dedent(doc[doc.index("    import tinygrad_rnn as tg"):doc.index("Without the")])
    text = "to be or not to be, that is the question. " * 10  # 32 streams of 13: one chunk
    ns = {"text": text}
    exec(compile(block, "tinygrad_rnn/data.py docstring", "exec"), ns)
    assert ns["x"].shape == (32, ns["x"].shape[1]) and np.isfinite(ns["loss"].item())
    assert all(s.grad_fn is None for s in ns["h"])
