"""Data: from a text file to the batches a training step takes.

Owns the vocabulary (:mod:`.vocabulary`), the reader of corpus files
(:mod:`.reader`: UTF-8 lines to tokens, streamed), the encoded corpus and
its seeded split (:mod:`.encoded`), its cache beside the text
(:mod:`.cache`), encoding in one pass (:mod:`.corpus`) and the seeded epoch
plans and batch iterators (:mod:`.batches`). It imports numpy and the base
modules (:mod:`lstm_accum.exceptions`, :mod:`lstm_accum.checks`,
:mod:`lstm_accum.files`) only, and Theano's ``floatX`` (lazily, for the dtype of one-hot batches):
no other part.
"""
from .vocabulary import Vocabulary, BOS_ID, EOS_ID, UNK_ID
from .reader import ReadStats, tokenize, load_text, count_words, read_lines
from .encoded import EncodedCorpus, split_corpus
from .corpus import encode_file, prepare_corpus
from .batches import (plan_epoch, make_batch, iterate_batches,
                      iterate_sentences, iterate_buckets, iterate_padded,
                      EpochPlan, BATCHINGS, INPUT_KINDS, PAD_ID)
