"""The algorithms (``init``/``step`` on stacked group state) and the one loop that runs them."""
from .centralized import Centralized, CentralizedState
from .dgd import Dgd, DgdState
from .extra import Extra, ExtraState
from .gt import GradientTracking, GtState
from .loop import run_loop
from .next import Next, NextState
from .push_diging import PushDiging, PushDigingState
from .schedules import SCHEDULES, Constant, Diminishing, Polynomial, make_schedule
from .sonata import Sonata, SonataState
from .steps import Scaled, auto_lr, local_gradients

__all__ = ["run_loop", "Next", "NextState", "Sonata", "SonataState", "Dgd", "DgdState",
           "GradientTracking", "GtState", "Extra", "ExtraState", "PushDiging",
           "PushDigingState", "Centralized", "CentralizedState", "SCHEDULES", "Constant", "Diminishing", "Polynomial",
           "make_schedule", "Scaled", "auto_lr", "local_gradients"]
