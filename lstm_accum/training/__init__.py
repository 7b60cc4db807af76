"""Training: the settings of a run (:mod:`.settings`) and the loop that
runs it (:mod:`.trainer`) over parts with one job each: the run's data
(:mod:`.data`), the model and accumulator it builds (:mod:`.build`), the
run state (:mod:`.run_state`), the checkpoint store (:mod:`.store`), the
window policy (:mod:`.windows`), the plateau schedule (:mod:`.schedule`),
the metrics, progress bar and plot (:mod:`.reporter`, :mod:`.plotting`),
the Ctrl-C guard (:mod:`.interrupt`) and a test hook (:mod:`.pause`). It
may import evaluation, accumulation, models, data, the Theano backend and
the base modules; only the command line imports it.
"""
from .settings import (TrainConfig, validate_config, OPTIMIZERS,
                       RESUMABLE_CHANGES, update_rule, SETTINGS)
from .store import settings_for_resume, saved_settings
from .trainer import Trainer, TrainResult, train
