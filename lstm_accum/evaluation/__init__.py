"""Evaluation and generation: perplexity of a model on held-out data
(:mod:`.scoring`), the log-probability of each sentence and word
(:mod:`.sentences`), the add-one unigram baseline to read it against, from a
corpus or from a checkpoint's saved counts (:mod:`.unigram`), and sampling
sentences one compiled step per word (:mod:`.sampling`). It may import the
parts below it (accumulation, models, data, ops, the Theano backend and the
base modules; it uses models, data, backend, exceptions and checks), never
training or the command line, which use it.
"""
from .scoring import Score, perplexity, score_corpus, perplexity_of_batches
from .unigram import (target_counts, unigram_probabilities, unigram_perplexity,
                      unigram_perplexity_from_counts)
from .sentences import score_sentences, SentenceScores, PerplexitySummary
from .sampling import sample_sentences, sample_ids

__all__ = ["Score", "perplexity", "score_corpus", "perplexity_of_batches",
           "target_counts", "unigram_probabilities", "unigram_perplexity",
           "unigram_perplexity_from_counts", "score_sentences",
           "SentenceScores", "PerplexitySummary", "sample_sentences",
           "sample_ids"]
