"""PyTorch RetinaFace, safe checkpoint loading and the tensorrtx ``.wts`` weight format."""
