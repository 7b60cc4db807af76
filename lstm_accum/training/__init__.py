"""TODO: one paragraph: what this part owns and what it may import."""
from .trainer import TrainConfig, Trainer, train
