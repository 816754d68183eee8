"""When to mix and with which W: one small pure schedule per algorithm."""
from .base import Action, Schedule, uniform
from .csgd import ParallelSGD
from .gossip import Gossip
from .local import LocalSGD, PostLocalSGD
from .lr import LRSchedule
from .qsr import QSR

__all__ = ["Action", "Gossip", "LRSchedule", "LocalSGD", "ParallelSGD", "PostLocalSGD", "QSR", "Schedule",
           "uniform"]
