"""The PyTorch side of :mod:`quality`: train and score a PyTorch LSTM LM.

Runs under a separate environment with torch (never ``.venv``; see
:mod:`quality`'s docstring) and imports nothing from lstm_accum. It reads
the ``.npz`` that :mod:`quality` writes from the lstm_accum side, so both
models see identical tokens:

``train_ids``, ``train_offsets``     the training split lstm-accum trained
                                     on (sentence ``i`` is
                                     ``ids[offsets[i]:offsets[i+1]]``, word
                                     ids only, no boundary tokens)
``heldout_ids``, ``heldout_offsets`` the held-out sentences
``vocab``, ``bos``, ``eos``          V (special tokens included) and the
                                     ids of ``<s>`` and ``</s>``

The model is what a PyTorch user writes for a word-level LM:
``nn.Embedding(V, H) -> nn.LSTM(H, H, batch_first=True) -> nn.Linear(H, V)``,
trained with ``torch.optim.Adam`` (lr 1e-3 unless ``--lr``) on minibatches
of 32 sentences (``--batch-size``) drawn in a fresh seeded random order each
epoch, padded to the longest sentence of the batch; the loss is
``F.cross_entropy`` averaged over the batch's real target tokens (padding
ignored), and ``clip_grad_norm_`` at 5 (``--clip``) before each step.
Sentence ``w1 .. wn`` gives input ``<s> w1 .. wn`` and targets
``w1 .. wn </s>``; every sentence starts from a zero state.

Held-out perplexity: ``exp(sum of NLL over every target token, </s>
included / number of target tokens)``, as lstm_accum's scoring defines it.

Prints one JSON line on stdout: ``perplexity``, ``nll``, ``tokens``,
``sentences``, ``train_s`` (the training loop), ``score_s``, ``wall_s``
(import of torch to the end), ``epoch_loss`` (mean training loss per epoch,
nats/token), ``updates``, ``parameters``, ``threads``, ``torch``.

Usage (what :mod:`quality` runs)::

    /tmp/torchvenv/bin/python benchmarks/torch_quality_worker.py DATA.npz \\
        --units 128 --epochs 3 --seed 1 --threads 1
"""
import argparse
import json
import math
import time

import numpy as np

T0 = time.perf_counter()


def _sentences(ids, offsets):
    return [ids[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def _batch(torch, sentences, bos, eos, ignore=-100):
    """Padded ``(B, T)`` inputs and targets (padding: input 0, target
    `ignore`) of a list of sentences."""
    T = max(len(s) for s in sentences) + 1
    X = np.zeros((len(sentences), T), dtype=np.int64)
    y = np.full((len(sentences), T), ignore, dtype=np.int64)
    for b, s in enumerate(sentences):
        n = len(s)
        X[b, 0] = bos
        X[b, 1:n + 1] = s
        y[b, :n] = s
        y[b, n] = eos
    return torch.from_numpy(X), torch.from_numpy(y)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", help=".npz written by benchmarks/quality.py")
    p.add_argument("--units", type=int, required=True, help="H")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from torch import nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = np.load(args.data, allow_pickle=False)
    V, bos, eos = int(data["vocab"]), int(data["bos"]), int(data["eos"])
    train = _sentences(data["train_ids"], data["train_offsets"])
    heldout = _sentences(data["heldout_ids"], data["heldout_offsets"])
    H = args.units

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, H)
            self.lstm = nn.LSTM(H, H, batch_first=True)
            self.out = nn.Linear(H, V)

        def forward(self, X):
            return self.out(self.lstm(self.embed(X))[0])

    model = LM()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.RandomState(args.seed)
    t_train = time.perf_counter()
    epoch_loss, updates = [], 0
    for _ in range(args.epochs):
        model.train()
        order = rng.permutation(len(train))
        nll, tokens = 0.0, 0
        for a in range(0, len(order), args.batch_size):
            X, y = _batch(torch, [train[i] for i in
                                  order[a:a + args.batch_size]], bos, eos)
            loss = F.cross_entropy(model(X).reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            updates += 1
            n = int((y >= 0).sum())
            nll += float(loss) * n
            tokens += n
        epoch_loss.append(nll / tokens)
    train_s = time.perf_counter() - t_train

    t_score = time.perf_counter()
    model.eval()
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for a in range(0, len(heldout), args.batch_size):
            X, y = _batch(torch, heldout[a:a + args.batch_size], bos, eos)
            nll += float(F.cross_entropy(model(X).reshape(-1, V),
                                         y.reshape(-1), reduction="sum"))
            tokens += int((y >= 0).sum())
    score_s = time.perf_counter() - t_score
    print(json.dumps({
        "perplexity": math.exp(nll / tokens), "nll": nll, "tokens": tokens,
        "sentences": len(heldout), "train_s": train_s, "score_s": score_s,
        "wall_s": time.perf_counter() - T0, "epoch_loss": epoch_loss,
        "updates": updates,
        "parameters": sum(q.numel() for q in model.parameters()),
        "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
