"""Jobs over many images: ``detect`` over folders of any size, on one device or one worker process per device.

The flow, for each device (in the calling process, or in a worker process of :mod:`runtime.jobs.workers`):

    Tasks (input order) → reader: a bounded thread pool reads and decodes ahead (:mod:`runtime.jobs.reader`)
    → batcher: images of one canvas size grouped into ``detect_arrays`` calls of up to ``batch``
    → Outcomes (each input's JSON record, and its annotated copy when asked) as their batches finish
    (:mod:`runtime.jobs.pipeline`)

and, in the calling process, the ``detect`` command puts the outcomes back in input order and writes them: the
record store of :mod:`runtime.jobs.records` (``--json-lines``, resumable), the ``--json`` array, annotated copies.
Whatever the number of inputs, the number of decoded images alive at once is bounded (see
:class:`runtime.jobs.tasks.JobSettings`).

Beyond one host, the same :class:`runtime.detector.Detector` runs inside Ray Data (:mod:`runtime.jobs.ray_data`).
"""
