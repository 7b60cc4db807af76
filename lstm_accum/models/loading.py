"""Rebuild a trained model from a training checkpoint, for evaluation and
sampling, without the training code.

A checkpoint (:mod:`lstm_accum.checkpoint`) records the builder's arguments
(metadata ``'model_config'``), the vocabulary (``'vocabulary'``) and the
parameters (arrays ``'model/<name>'``); :func:`load_model` builds the same
network again and sets them.
"""
from ..checkpoint import load_checkpoint
from ..data import Vocabulary
from ..exceptions import CheckpointError, IncompatibleStateError, InputError
from .build import CELLS, build_model

__all__ = ["load_model"]


def load_model(path, batching=None, input=None):
    """Rebuild the model and vocabulary of a checkpoint, for eval/sampling.

    Parameters
    ----------
    path : str
        A ``checkpoint.npz`` or ``best.npz``.
    batching, input : str, optional
        Build with another batching or input kind than training used (the
        parameters are the same); default: as trained.

    Returns
    -------
    model : LanguageModel
    vocab : Vocabulary
    checkpoint : Checkpoint

    Raises
    ------
    CheckpointError
        Missing, damaged or foreign file.
    IncompatibleStateError
        Newer format, or parameters that do not fit the recorded model.
    """
    saved = load_checkpoint(path)
    meta = saved.metadata
    try:
        mc = dict(meta["model_config"])
        vocab = Vocabulary.from_dict(meta["vocabulary"], source=path)
    except (KeyError, TypeError, InputError) as err:
        raise CheckpointError("%s is not a training checkpoint of lstm_accum "
                              "(%s)" % (path, err)) from None
    if mc.get("cell") not in CELLS:
        raise IncompatibleStateError(
            "checkpoint %s holds a model with a custom recurrent layer (%r); "
            "rebuild it in Python with build_model(cell=...) and load the "
            "'model/' arrays with model.set_param_values" % (path,
                                                             mc.get("cell")))
    if mc["vocab_size"] != len(vocab):
        raise IncompatibleStateError(
            "checkpoint %s: model vocab_size=%d but its vocabulary has %d "
            "entries" % (path, mc["vocab_size"], len(vocab)))
    model = build_model(mc["vocab_size"], mc["num_units"],
                        num_layers=mc["num_layers"],
                        input=input or mc["input"],
                        batching=batching or mc["batching"], cell=mc["cell"],
                        dropout=mc["dropout"],
                        grad_clipping=mc["grad_clipping"], seed=mc["seed"])
    values = {k[len("model/"):]: v for k, v in saved.arrays.items()
              if k.startswith("model/")}
    try:
        model.set_param_values(values)
    except InputError as err:
        raise IncompatibleStateError("checkpoint %s does not fit its "
                                     "recorded model: %s" % (path, err))
    return model, vocab, saved
