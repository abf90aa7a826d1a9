"""The benchmark: timing method, what each backend is timed on, the driver, and the detect.py-style baseline."""
