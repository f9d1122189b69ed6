"""The algorithms (``init``/``step`` on stacked group state) and the one loop that runs them."""
from .loop import run_loop
from .next import Next, NextState
from .schedules import SCHEDULES, Constant, Diminishing, Polynomial, make_schedule
from .sonata import Sonata, SonataState

__all__ = ["run_loop", "Next", "NextState", "Sonata", "SonataState", "SCHEDULES", "Constant",
           "Diminishing", "Polynomial", "make_schedule"]
