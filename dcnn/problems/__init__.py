"""Models, losses, regularisers and the stacked local problems of a group of agents."""
from .batches import (BatchProblems, batch_problems, batch_sizes, check_batch_size,
                      sample_batches)
from .local import LocalProblems
from .losses import LOSSES, per_sample_loss, per_sample_score
from .models import ACTIVATIONS, FlatModel, cnn, mlp
from .regularizers import REGULARIZERS, Regularizer, make_regularizer, soft_threshold
from .transformer import TokenTransformer, transformer

__all__ = ["LocalProblems", "LOSSES", "per_sample_loss", "per_sample_score", "ACTIVATIONS",
           "FlatModel", "mlp", "cnn", "REGULARIZERS", "Regularizer", "make_regularizer",
           "soft_threshold", "BatchProblems", "batch_problems", "batch_sizes",
           "check_batch_size", "sample_batches", "TokenTransformer", "transformer"]
