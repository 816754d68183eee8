"""Algorithms as rules over the one mixing step (see base.py); built from settings in dsgd.train.build."""
from .base import Engine, Rule
from .choco import Choco
from .compressed_average import CompressedAveraging
from .engine import WorkerEngine, mix_model_
from .diffusion import D2_EIGENVALUE_BOUND, Diffusion, halfway, smallest_eigenvalue
from .optimizer import OptimizerRule
from .powersgd import PowerSGDAveraging
from .pushsum import PushSum
from .qgm import QuasiGlobalMomentum
from .tracking import GradientTracking

__all__ = ["Choco", "CompressedAveraging", "D2_EIGENVALUE_BOUND", "Diffusion", "Engine", "GradientTracking", "OptimizerRule", "PowerSGDAveraging", "PushSum",
           "QuasiGlobalMomentum", "Rule", "WorkerEngine", "halfway", "mix_model_", "smallest_eigenvalue"]
