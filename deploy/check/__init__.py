"""Does a deployed artifact compute what the PyTorch original computes?

``verify`` runs the artifact and the checkpoint on the same clips (or seeded random inputs) and
judges every output by the tolerance of the artifact's precision (``tamdeploy.compare.TOLERANCES``);
``bisect`` then names the first intermediate tensor that diverges.
"""

from tamdeploy.deploy.check.bisect import BisectReport, bisect
from tamdeploy.deploy.check.verify import VerifyReport, verify

__all__ = ["BisectReport", "VerifyReport", "bisect", "verify"]
