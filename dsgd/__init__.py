"""dsgd: decentralized and local SGD for PyTorch; every algorithm is a schedule of one mixing step."""
__version__ = "0.1.0"
