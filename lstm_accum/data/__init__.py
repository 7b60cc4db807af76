"""TODO: one paragraph: what this part owns and what it may import."""
from .vocabulary import Vocabulary, BOS_ID, EOS_ID, UNK_ID
from .corpus import (EncodedCorpus, ReadStats, tokenize, load_text, count_words,
                     encode_file, prepare_corpus, split_corpus)
from .batches import (plan_epoch, make_batch, iterate_batches, iterate_sentences,
                      iterate_buckets, iterate_padded)
