"""emkit: deep-learning segmentation of neural tissue in EM stacks."""

__version__ = "0.1.0"
