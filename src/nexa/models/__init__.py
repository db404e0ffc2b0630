"""Student architectures beyond stock HF ones: the NEXUS selective-SSM backbone, the layer-free fixed-point model, energy refinement and the uncertainty gate.

``ARCHITECTURES`` is the hook ``nexa.train.build`` reads (``model.architecture: ssm|deq`` in a train config).
Importing this package also registers the DEQ config/model with HF's Auto classes, so a saved DEQ folder
loads with ``AutoModelForCausalLM.from_pretrained`` like any other checkpoint.
"""

from __future__ import annotations

from nexa.models.deq import build_deq, register_deq
from nexa.models.ssm import build_ssm

ARCHITECTURES = {"ssm": build_ssm, "deq": build_deq}

register_deq()
