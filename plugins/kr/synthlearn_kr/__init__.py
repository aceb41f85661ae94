"""synthlearn-kr: the ``kr`` arm, knowledge recycling across sites (generative knowledge
distillation: site teachers label synthetic images; the set is redrawn during training)."""
