"""Score sentences with a trained model: the log-probability of each
sentence and, on request, of each of its words.

Conventions (those of :mod:`.scoring`, so the totals add up to what
:func:`~lstm_accum.evaluation.score_corpus` reports):

* a sentence ``w1 .. wn`` is read as ``<s> w1 .. wn`` and its targets are
  ``w1 .. wn </s>``; ``<s>`` is never predicted, ``</s>`` always is, so an
  empty sentence scores ``log p(</s> | <s>)``;
* a word outside the vocabulary is ``<unk>``.  With ``unk='include'`` the
  model's probability of ``<unk>`` counts like any other word's; with
  ``unk='exclude'`` an ``<unk>`` target is not scored (not in the totals,
  not in the token count) and is counted as an OOV, as SRILM's
  ``ngram -ppl`` does.  The next words are still conditioned on it;
* with ``max_length``, a sentence of more words is scored as the reader
  cuts it in training: in consecutive pieces of ``max_length`` words (the
  last one shorter), each read as a sentence of its own (``<s>`` .. ``</s>``);
  its total is the sum of its pieces';
* log-probabilities are natural logarithms (divide by ``ln 10`` for base 10).

How it runs: the pieces are sorted by length, longest first, and cut into
minibatches (:func:`length_batches`) fed to one compiled, forward-only
function of the model, ``f(inputs, targets) -> per-target NLL``, built on
first use and kept on the model (:meth:`~lstm_accum.models.LanguageModel.
compiled`, key ``'sentence_scores'``), on whatever device Theano uses; no
mask.  For a model whose outputs depend only on the words before them
(:attr:`~lstm_accum.models.LanguageModel.causal`: the built-in forward
LSTM and GRU stacks), a minibatch may hold pieces up to an eighth shorter
than its longest: their rows run on past their end, and those steps'
outputs are dropped, which leaves every kept score as the piece alone gives
it (to float32 rounding: the products run on other shapes).  Fewer, fuller
minibatches: the recurrent weights are read once per step for more
sentences.  Other models get equal-length minibatches.  The per-target
values come back in the model's float type and are summed in float64.
"""
import dataclasses
import math
from collections import namedtuple
from typing import List, Optional

import numpy as np

from ..backend import theano
from ..checks import is_int
from ..data import BOS_ID, EOS_ID, UNK_ID, Vocabulary, tokenize
from ..exceptions import InputError
from ..models import LanguageModel
from ..ops import include_team

__all__ = ["score_sentences", "SentenceScores", "PerplexitySummary",
           "UNK_CONVENTIONS", "LOG_BASES", "BATCH_SIZE", "length_batches"]

#: ``'include'``: ``<unk>`` targets are scored; ``'exclude'``: they are not,
#: and count as OOVs (SRILM).
UNK_CONVENTIONS = ("include", "exclude")
#: Most sentences per compiled call unless told (benchmarks/score_speed.py
#: --batch-size, two cores, H=256 and 1024).
BATCH_SIZE = 64
#: A causal model's minibatch takes pieces down to this fraction of its
#: longest one's length shorter (rounded down: equal lengths below 8 words).
PAD_FRACTION = 8
#: Log bases of :meth:`SentenceScores.summary`: name -> ``ln(base)``.
LOG_BASES = {"e": 1.0, "10": math.log(10.0)}

#: SRILM's summary of ``ngram -ppl``: ``sentences`` (sequences scored),
#: ``words`` (without ``</s>``), ``oovs`` (``<unk>`` targets not scored),
#: ``zeroprobs`` (always 0: a softmax gives no word probability 0),
#: ``logprob`` (total, in ``log_base``), ``ppl = base**(-logprob /
#: (words - oovs + sentences))``, ``ppl1 = base**(-logprob / (words -
#: oovs))``, and the conventions used (``log_base``, ``unk``).
PerplexitySummary = namedtuple("PerplexitySummary", [
    "sentences", "words", "oovs", "zeroprobs", "logprob", "ppl", "ppl1",
    "log_base", "unk"])


@dataclasses.dataclass
class SentenceScores:
    """What :func:`score_sentences` returns, one entry per sentence given.

    Attributes
    ----------
    log_probs : numpy.ndarray
        float64 ``(n,)``: each sentence's total natural log-probability
        (its scored targets).
    words : numpy.ndarray
        int64 ``(n,)``: words of each sentence (``</s>`` not included).
    unks : numpy.ndarray
        int64 ``(n,)``: of them, words that are ``<unk>`` (outside the
        vocabulary).
    pieces : numpy.ndarray
        int64 ``(n,)``: sequences each sentence was scored as (1; more when it was longer
        than ``max_length``): its number of ``</s>`` targets.
    unk : str
        The convention used (:data:`UNK_CONVENTIONS`).
    word_log_probs : list of numpy.ndarray, or None
        With ``word_scores=True``: for each sentence, the float64 natural
        log-probability of each target in order (each piece's words, then
        its ``</s>``), ``nan`` where an ``<unk>`` target is not scored
        (``unk='exclude'``).
    """
    log_probs: np.ndarray
    words: np.ndarray
    unks: np.ndarray
    pieces: np.ndarray
    unk: str
    word_log_probs: Optional[List[np.ndarray]] = None

    @property
    def oovs(self):
        """``<unk>`` targets not scored per sentence (0 with 'include')."""
        return self.unks if self.unk == "exclude" else np.zeros_like(
            self.unks)

    @property
    def targets(self):
        """Scored targets per sentence: ``words - oovs + pieces``."""
        return self.words - self.oovs + self.pieces

    def summary(self, log_base="e"):
        """The corpus figures in SRILM's names (:class:`PerplexitySummary`).

        Parameters
        ----------
        log_base : {'e', '10'}

        Returns
        -------
        PerplexitySummary
            ``ppl`` equals ``exp(NLL / tokens)`` of
            :func:`~lstm_accum.evaluation.score_corpus` on the same
            sentences with ``unk='include'``.

        Raises
        ------
        InputError
            For another log base.
        """
        if str(log_base) not in LOG_BASES:
            raise InputError("log_base must be one of %s, got %r"
                             % (sorted(LOG_BASES), log_base))
        sentences = int(self.pieces.sum())
        words = int(self.words.sum())
        oovs = int(self.oovs.sum())
        nats = float(self.log_probs.sum())
        return PerplexitySummary(
            sentences, words, oovs, 0, nats / LOG_BASES[str(log_base)],
            _exp_or_inf(-nats / (words - oovs + sentences)),
            _exp_or_inf(-nats / (words - oovs)) if words > oovs else math.nan,
            str(log_base), self.unk)


def _exp_or_inf(x):
    try:
        return math.exp(x)
    except OverflowError:   # a diverged model: > ~709 nats per token
        return math.inf


def score_sentences(model, sentences, vocab=None, word_scores=False,
                    unk="include", max_length=None, lowercase=False,
                    split_punctuation=False, batch_size=None):
    """Log-probabilities of sentences under a model, in one call.

    See the module notes for the conventions and how the work is batched.

    Parameters
    ----------
    model : LanguageModel
        Any input kind and batching; dropout is off.  A model built with
        ``batching='bucket'`` (as :func:`~lstm_accum.models.load_model`
        gives with ``batching='bucket'``) runs whole minibatches; one built
        with ``'sample'`` runs one sentence per call.
    sentences : sequence of str or of integer arrays
        Text (tokenized as the reader does:
        :func:`~lstm_accum.data.tokenize`) or word ids (``<s>``/``</s>``
        not included).
    vocab : Vocabulary, optional
        Needed for text.
    word_scores : bool
        Also return each target's log-probability.
    unk : {'include', 'exclude'}
        Whether ``<unk>`` targets are scored (see the module notes).
    max_length : int, optional
        Score longer sentences in pieces of this many words, as training
        read them (the checkpoint's ``config['max_length']``); None: whole.
    lowercase, split_punctuation : bool
        Reader settings for text (the checkpoint's ``config``).
    batch_size : int, optional
        Most sentences per compiled call (default :data:`BATCH_SIZE`).

    Returns
    -------
    SentenceScores

    Raises
    ------
    InputError
        For a bad argument, text without a vocabulary, or ids outside
        ``[0, vocab_size)``.

    Examples
    --------
    >>> from lstm_accum import build_model
    >>> model = build_model(10, 4, input="ids", batching="bucket", seed=1)
    >>> scores = score_sentences(model, [[3, 4, 5], []], word_scores=True)
    >>> [len(w) for w in scores.word_log_probs]
    [4, 1]
    >>> bool(abs(scores.log_probs[0] - scores.word_log_probs[0].sum()) < 1e-9)
    True
    """
    batch_size = BATCH_SIZE if batch_size is None else batch_size
    _check_args(model, unk, max_length, batch_size)
    ids = _encode(sentences, vocab, lowercase, split_punctuation,
                  model.vocab_size)
    pieces = _Pieces(ids, max_length)
    nll = np.zeros(len(pieces.target_sentence), np.float64)
    fn = model.compiled("sentence_scores", lambda: _Forward(model))
    padded = model.batching == "bucket" and model.causal
    for starts, lengths, where in pieces.batches(
            1 if model.batching == "sample" else batch_size, padded):
        nll[where] = fn(pieces.flat, starts, lengths)
    targets = pieces.targets
    lp = -nll
    if unk == "exclude":
        lp[targets == UNK_ID] = np.nan
    n = len(ids)
    words = np.array([len(s) for s in ids], np.int64)
    unks = np.bincount(pieces.target_sentence, weights=targets == UNK_ID,
                       minlength=n).astype(np.int64)
    totals = np.bincount(pieces.target_sentence,
                         weights=np.nan_to_num(lp, nan=0.0), minlength=n)
    word_lp = None
    if word_scores:
        word_lp = np.split(lp, np.cumsum(words + pieces.count)[:-1])
    return SentenceScores(totals, words, unks, pieces.count.astype(np.int64),
                          unk, word_lp)


def _check_args(model, unk, max_length, batch_size):
    if not isinstance(model, LanguageModel):
        raise InputError("score_sentences needs a LanguageModel, got %s"
                         % type(model).__name__)
    if unk not in UNK_CONVENTIONS:
        raise InputError("unk must be one of %s, got %r"
                         % (UNK_CONVENTIONS, unk))
    if max_length is not None and (not is_int(max_length) or max_length < 1):
        raise InputError("max_length must be a positive integer (words) or "
                         "None, got %r" % (max_length,))
    if not is_int(batch_size) or batch_size < 1:
        raise InputError("batch_size must be an integer >= 1, got %r"
                         % (batch_size,))


def _encode(sentences, vocab, lowercase, split_punctuation, vocab_size):
    """The sentences as int32 id arrays, checked against the model."""
    if isinstance(sentences, (str, bytes)):
        raise InputError("sentences must be a list of sentences, got one "
                         "string; wrap it in a list")
    out = []
    for i, s in enumerate(sentences):
        if isinstance(s, str):
            if not isinstance(vocab, Vocabulary):
                raise InputError("sentence %d is text: pass the model's "
                                 "vocabulary (vocab=...) to map its words "
                                 "to ids" % i)
            out.append(vocab.encode(tokenize(s, lowercase,
                                             split_punctuation)))
            continue
        a = np.asarray(s)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise InputError("sentence %d must be a str or a 1-D array of "
                             "integer word ids, got %r" % (i, s))
        if a.size and (a.min() < 0 or a.max() >= vocab_size):
            raise InputError("sentence %d holds word ids outside [0, %d) "
                             "(the model's vocabulary size): %r"
                             % (i, vocab_size, s))
        out.append(a.astype(np.int32))
    if vocab is not None and len(vocab) != vocab_size:
        raise InputError("the vocabulary has %d entries but the model "
                         "vocab_size=%d: pass the model's own vocabulary"
                         % (len(vocab), vocab_size))
    return out


class _Pieces(object):
    """The sequences to score: each sentence cut into pieces of at most
    ``max_length`` words, laid out flat; where each piece's targets go."""

    def __init__(self, ids, max_length):
        lengths = np.array([len(s) for s in ids], np.int64)
        self.flat = np.concatenate(ids + [np.zeros(0, np.int32)]).astype(
            np.int32)
        L = max_length or max(int(lengths.max(initial=0)), 1)
        count = np.maximum(-(-lengths // L), 1)    # an empty line: 1 piece
        self.count = count
        sentence = np.repeat(np.arange(len(ids)), count)
        first = np.cumsum(count) - count           # first piece of each
        k = np.arange(len(sentence)) - first[sentence]
        word_start = np.cumsum(lengths) - lengths
        self.start = word_start[sentence] + k * L
        self.length = np.minimum(lengths[sentence] - k * L, L).clip(0)
        # Targets of piece p: its words, then </s>; in sentence order.
        self.target_start = np.cumsum(self.length + 1) - (self.length + 1)
        self.target_sentence = np.repeat(sentence, self.length + 1)
        targets = np.full(int((self.length + 1).sum()), EOS_ID, np.int32)
        words = np.repeat(self.target_start - self.start, self.length) \
            + np.arange(len(self.flat))
        targets[words] = self.flat
        self.targets = targets

    def batches(self, batch_size, padded):
        """``(word starts, lengths, target positions)`` of the minibatches
        of :func:`length_batches`; the positions row after row, each row's
        ``length + 1`` targets."""
        for chunk in length_batches(self.length, batch_size, padded):
            counts = self.length[chunk] + 1
            first = np.cumsum(counts) - counts
            where = np.repeat(self.target_start[chunk] - first, counts) \
                + np.arange(int(counts.sum()))
            yield self.start[chunk], self.length[chunk], where


def length_batches(lengths, batch_size, padded=False):
    """Minibatches of sequences for a forward pass, longest first.

    Parameters
    ----------
    lengths : sequence of int
        Each sequence's length.
    batch_size : int
        Most sequences per minibatch.
    padded : bool
        False: equal lengths in each minibatch.  True: a minibatch whose
        longest sequence has ``T`` words also takes sequences down to ``T -
        T // PAD_FRACTION`` words (for causal models, whose shorter rows are
        run on past their end and those outputs dropped).

    Returns
    -------
    list of numpy.ndarray
        Indices into ``lengths``, one array per minibatch, in the order of
        decreasing length (ties in input order).
    """
    lengths = np.asarray(lengths, np.int64)
    order = np.argsort(-lengths, kind="stable")
    out = []
    i = 0
    while i < len(order):
        longest = int(lengths[order[i]])
        floor = longest - longest // PAD_FRACTION if padded else longest
        j = i + 1
        while j < len(order) and j - i < batch_size and \
                lengths[order[j]] >= floor:
            j += 1
        out.append(order[i:j])
        i = j
    return out


class _Forward(object):
    """The model's compiled forward pass: per-target NLL of a minibatch."""

    def __init__(self, model):
        self.model = model
        self.fn = theano.function(model.inputs,
                                  model.token_nll(deterministic=True),
                                  name="sentence_scores",
                                  mode=include_team(
                                      theano.compile.mode.get_default_mode()))
        self.input_dtype = model.input_var.dtype
        self.mask_dtype = (model.mask_var.dtype if model.mask_var is not None
                           else None)

    def __call__(self, flat, starts, lengths):
        """NLL of the pieces ``flat[s:s + n]`` (``starts``, ``lengths``):
        each piece's ``n + 1`` targets, piece after piece (float64).  A
        piece shorter than the longest gets ``</s>`` after its end; the
        outputs there are dropped."""
        B, T = len(starts), int(lengths.max())
        steps = np.arange(T)
        inside = steps < lengths[:, None]
        X = np.full((B, T + 1), EOS_ID, np.int32)
        X[:, 0] = BOS_ID
        X[:, 1:][inside] = flat[(starts[:, None] + steps)[inside]]
        y = np.empty_like(X)
        y[:, :-1] = X[:, 1:]
        y[:, -1] = EOS_ID
        if self.model.input_kind == "onehot":
            X = np.eye(self.model.vocab_size, dtype=self.input_dtype)[X]
        arrays = [X, y[0] if self.model.batching == "sample" else y]
        if self.mask_dtype is not None:
            arrays.append(np.ones(y.shape, self.mask_dtype))
        out = np.asarray(self.fn(*arrays), np.float64).reshape(B, T + 1)
        return out[np.arange(T + 1) <= lengths[:, None]]
