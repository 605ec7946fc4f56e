"""Running one model across several processes (devices, machines) with ``torch.distributed``."""
