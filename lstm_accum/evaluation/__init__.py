"""TODO: one paragraph: what this part owns and what it may import."""
from .scoring import perplexity, score_corpus, unigram_perplexity
from .sampling import sample_sentences, sample_ids
