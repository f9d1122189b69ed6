"""The algorithms (``init``/``step`` on stacked group state) and the one loop that runs them."""
from .loop import run_loop
from .next import Next, NextState
from .schedules import SCHEDULES, Constant, Diminishing, Polynomial, make_schedule

__all__ = ["run_loop", "Next", "NextState", "SCHEDULES", "Constant", "Diminishing",
           "Polynomial", "make_schedule"]
