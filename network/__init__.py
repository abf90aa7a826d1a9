"""The RetinaFace network rebuilt layer by layer through TensorRT's network-definition API."""
