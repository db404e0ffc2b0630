"""Student architectures beyond stock HF ones: the NEXUS selective-SSM backbone, the layer-free fixed-point model, energy refinement and the uncertainty gate."""
