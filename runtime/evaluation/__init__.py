"""WIDER FACE evaluation: the data files, the official protocol, and a run of a detector over the val images."""
