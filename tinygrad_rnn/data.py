"""Character data for truncated backpropagation through time (``tg.data``).

A text is one long stream of token ids. To train on it with B sequences in
parallel, ``batchify`` cuts it into B contiguous streams, one per row (as
Karpathy's char-rnn loader does), and ``tbptt_batches`` walks along all rows at
once in chunks of T tokens. Chunk k+1 starts exactly where chunk k ended, so the
hidden state at the end of one chunk is the right initial state for the next::

    text:     a b c d e f g h i j k l m n o p q r s t u v w x      (24 tokens)
    batchify(ids, 2):        row 0: a b c d e f g h i j k l
                             row 1: m n o p q r s t u v w x
    tbptt_batches(.., 4):    x = [a b c d | m n o p], y = [b c d e | n o p q]
                             x = [e f g h | q r s t], y = [f g h i | r s t u]
                             x = [i j k | u v w],     y = [j k l | v w x]   (the last chunk is shorter)

The truncated-BPTT loop carries the hidden state from chunk to chunk and cuts
the graph between chunks with ``detach()``: the forward pass still sees the
whole history through ``h``, but gradients flow back at most T steps::

    import tinygrad_rnn as tg, tinygrad_rnn.nn as nn, tinygrad_rnn.nn.functional as F
    from tinygrad_rnn.data import CharVocab, batchify, tbptt_batches

    vocab = CharVocab(text)
    streams = batchify(vocab.encode(text), batch_size=32)
    embed, rnn, head = nn.Embedding(len(vocab), 64), nn.LSTM(64, 128), nn.Linear(128, len(vocab))
    opt = tg.optim.Adam([*embed.parameters(), *rnn.parameters(), *head.parameters()], lr=2e-3)
    h = None
    for x, y in tbptt_batches(streams, seq_len=50):      # x, y: (B, T) int64
        out, h = rnn(embed(x.T), h)                     # the layer wants (T, B, E)
        logits = head(out)                              # (T, B, V)
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.T.reshape(-1))
        opt.zero_grad(); loss.backward(); opt.step()
        h = tuple(s.detach() for s in h)                # LSTM: (h, c); RNN/GRU: h = h.detach()

Without the ``detach()`` every chunk's graph hangs on to the previous one:
memory grows with every step, and ``backward`` fails on the second chunk
because the older part of the graph was already freed.
"""
from .backend import host as np
from .tensor import Tensor


def batchify(tokens, batch_size):
    """Cut a 1-D token stream into ``batch_size`` contiguous streams: (N,) -> (B, N // B) int64 NumPy array.

    Row b is tokens[b * L:(b + 1) * L] with L = N // B; the last N % B tokens are dropped."""
    a = _host_ids(tokens, "batchify: tokens")
    if a.ndim != 1:
        raise ValueError(f"batchify: expected a 1-D token stream, got shape {a.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batchify: batch_size must be a positive int, got {batch_size!r}")
    L = a.shape[0] // batch_size
    if L < 2:
        raise ValueError(f"batchify: {a.shape[0]} tokens are too few for {batch_size} streams of at least "
                         f"2 tokens (an input and its next-token target)")
    return a[:L * batch_size].reshape(batch_size, L).copy()


def tbptt_batches(streams, seq_len, backend=None):
    """Yield consecutive (x, y) int64 Tensors of shape (B, T), y[:, t] = x[:, t + 1]'s token (next-token targets).

    x = streams[:, i:i+T], y = streams[:, i+1:i+1+T] for i = 0, T, 2T, ...; the last
    chunk is shorter when (L - 1) is not a multiple of T. ``streams``: (B, L) from ``batchify``."""
    a = _host_ids(streams, "tbptt_batches: streams")
    if a.ndim != 2:
        raise ValueError(f"tbptt_batches: expected streams of shape (B, L) (see batchify), got shape {a.shape}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"tbptt_batches: seq_len must be a positive int, got {seq_len!r}")
    L = a.shape[1]
    for i in range(0, L - 1, seq_len):
        T = min(seq_len, L - 1 - i)
        yield (Tensor(a[:, i:i + T], backend=backend),
               Tensor(a[:, i + 1:i + 1 + T], backend=backend))


class CharVocab:
    """Characters <-> ids: the sorted unique characters of ``text`` get ids 0, 1, 2, ...

    ``encode(str) -> int64 NumPy array``, ``decode(ids) -> str``, ``len(vocab)``,
    ``vocab.chars`` (the list), ``vocab.stoi`` / ``vocab.itos`` (the two maps)."""

    def __init__(self, text):
        if not isinstance(text, str):
            raise TypeError(f"CharVocab: expected a str, got {type(text).__name__}")
        if not text:
            raise ValueError("CharVocab: the text is empty")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = dict(enumerate(self.chars))

    def __len__(self):
        return len(self.chars)

    def __repr__(self):
        return f"CharVocab({len(self)} chars: {''.join(self.chars)[:40]!r})"

    def encode(self, text):
        try:
            return np.fromiter((self.stoi[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as e:
            c = e.args[0]
            raise ValueError(f"CharVocab.encode: character {c!r} (position {text.index(c)}) is not in the "
                           f"vocabulary of {len(self)} characters") from None

    def decode(self, ids):
        a = _host_ids(ids, "CharVocab.decode: ids").reshape(-1)
        bad = a[(a < 0) | (a >= len(self))]
        if bad.size:
            raise IndexError(f"CharVocab.decode: id {int(bad[0])} is out of range; expected ids in [0, {len(self)})")
        return "".join(self.chars[i] for i in a.tolist())


def _host_ids(x, what):
    """Token ids from a list, NumPy array or Tensor, as an int64 NumPy array."""
    a = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.size and a.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected integer token ids, got dtype {a.dtype}")
    return a.astype(np.int64)


__all__ = ["batchify", "tbptt_batches", "CharVocab"]
