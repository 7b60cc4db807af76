"""load_model rebuilds a checkpoint's model without the training code: the
legacy fixture (written before the subpackage layout) scores exactly as
recorded, in any batching or input kind, and foreign or mismatched files are
refused with the errors the command line reports in one line."""
import json
import os

import numpy as np
import pytest

from lstm_accum.checkpoint import load_checkpoint, save_checkpoint
from lstm_accum.data import encode_file
from lstm_accum.evaluation import score_corpus, unigram_perplexity_from_counts
from lstm_accum.exceptions import CheckpointError, IncompatibleStateError
from lstm_accum.models import LanguageModel, load_model
from helpers import float64

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "fixtures", "legacy_run")
CHECKPOINT = os.path.join(FIXTURE, "checkpoint.npz")


@pytest.fixture(scope="module")
def expected():
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The fixture's corpus, encoded with the checkpoint's vocabulary (in a
    copy: the encoded cache goes beside the text)."""
    path = tmp_path_factory.mktemp("legacy") / "corpus.txt"
    with open(os.path.join(FIXTURE, "corpus.txt"), "rb") as f:
        path.write_bytes(f.read())
    _, vocab, saved = load_model(CHECKPOINT)
    config = saved.metadata["config"]
    encoded, _ = encode_file(str(path), vocab, lowercase=config["lowercase"],
                             max_length=config["max_length"])
    return encoded


@pytest.mark.parametrize("kwargs", [dict(batching="bucket"),
                                    dict(batching="mask", input="onehot")])
def test_legacy_checkpoint_scores_as_recorded(corpus, expected, kwargs):
    with float64():
        model, vocab, saved = load_model(CHECKPOINT, **kwargs)
        model.score_function()      # compiled in float64
    assert isinstance(model, LanguageModel)
    trained = saved.metadata["model_config"]
    assert trained["input"] == "ids"
    assert (model.batching, model.input_kind) == (
        kwargs["batching"], kwargs.get("input", trained["input"]))
    assert len(vocab) == model.vocab_size == trained["vocab_size"] == 28
    params = model.param_values()
    for name, value in params.items():
        assert np.array_equal(value, saved.arrays["model/" + name]), name
    score = score_corpus(model, corpus, batch_size=32)
    assert score.tokens == expected["tokens"]
    assert score.perplexity == pytest.approx(expected["perplexity"],
                                             rel=1e-12)
    baseline = unigram_perplexity_from_counts(
        saved.arrays["data/train_target_counts"], corpus)
    assert "unigram baseline perplexity %.2f " % baseline in \
        expected["eval_stdout"]
    # A whole checkpoint to the codec: no dropout, no 'rng/' keys, and the
    # other keys are not its business.
    model.set_rng_state(saved.arrays)
    assert model.rng_state() == {}


def _rewrite(tmp_path, change):
    saved = load_checkpoint(CHECKPOINT)
    arrays, metadata = dict(saved.arrays), json.loads(json.dumps(
        saved.metadata))
    change(arrays, metadata)
    return save_checkpoint(str(tmp_path / "changed.npz"), arrays, metadata)


def test_refuses_what_it_cannot_rebuild(tmp_path):
    with pytest.raises(CheckpointError):
        load_model(str(tmp_path / "missing.npz"))

    def no_model_config(arrays, metadata):
        del metadata["model_config"]
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_model(_rewrite(tmp_path, no_model_config))

    def custom_cell(arrays, metadata):
        metadata["model_config"]["cell"] = "my_factory"
    with pytest.raises(IncompatibleStateError,
                       match="custom recurrent layer.*'my_factory'"):
        load_model(_rewrite(tmp_path, custom_cell))

    def other_vocab_size(arrays, metadata):
        metadata["model_config"]["vocab_size"] = 29
    with pytest.raises(IncompatibleStateError,
                       match="vocab_size=29 but its vocabulary has 28"):
        load_model(_rewrite(tmp_path, other_vocab_size))

    def missing_parameter(arrays, metadata):
        del arrays["model/softmax.b"]
    with pytest.raises(IncompatibleStateError,
                       match="does not fit.*softmax.b"):
        load_model(_rewrite(tmp_path, missing_parameter))
