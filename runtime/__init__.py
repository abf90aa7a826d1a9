"""Detection runtime shared by every backend: pre-processing, priors, decoding, NMS, SDK."""
