"""Beyond one host: the same :class:`runtime.detector.Detector` inside Ray Data, one actor per GPU.

Ray Data reads the image files (``ray.data.read_binary_files``, from local folders, NFS or object stores), hands
them in batches to a pool of actors, each of which builds one Detector once (Ray gives an actor made with
``num_gpus=1`` its own GPU, as ``cuda:0`` of that actor) and turns each batch into records; Ray schedules,
retries and spreads the work over every node of the cluster. Needs the ``ray`` extra
(``pip install '.[ray]'`` in the clone)::

    import ray
    from runtime.jobs.ray_data import detect_dataset, write_records

    ray.init()                                   # on a cluster: ray.init(address="auto")
    records = detect_dataset("s3://bucket/photos/", actors=16, num_gpus=1, batch=8,
                             engine="mnet-fp16.engine", backend="tensorrt", resize="stretch")
    records.write_parquet("s3://bucket/faces/")  # columns image, faces, error, record
    write_records(records, "faces.jsonl")        # or: detect's JSON Lines, written by this process

Each output row has ``image`` (the file's path), ``faces`` (the number of faces reported), ``error`` (None, or
the one-line message of an input that could not be read) and ``record`` (the image's record as ``detect
--json-lines`` writes it, one JSON text). Decoding runs in each actor's threads (``read_threads`` CPUs are
reserved per actor), with the checks of :func:`runtime.image_io.decode_image`; batches go through
:class:`runtime.jobs.pipeline.BatchRunner`, as in ``detect``. Rows come in no particular order (Ray Data's
default); resuming is Ray's business (task retries, actor restarts), not the record store's. Give TensorRT an
engine built beforehand (``retinaface-trt build``): actors of one host building the same engine-cache entry from
``weights`` at once could clash.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from retinaface_trt.errors import RetinaFaceError
from runtime.face import DEFAULT_VIS_THRESHOLD, to_json
from runtime.jobs.reader import Decoded
from runtime.jobs.tasks import JobSettings, Task, failed


def import_ray():
    """The ``ray`` module with Ray Data; RetinaFaceError naming the ``ray`` extra when either is missing."""
    from retinaface_trt.extras import require

    require("ray.data", "ray", "the Ray Data recipe (runtime.jobs.ray_data)")   # also needs pyarrow and pandas
    import ray

    return ray


class FaceDetection:
    """The callable class ``map_batches`` gets: each actor makes one and keeps its Detector for every batch.

    options:       :meth:`runtime.detector.Detector.from_options` keywords (weights or engine, backend, device,
                   precision, resize, input_size, thresholds, …; device defaults to ``auto``: the actor's GPU)
    vis_threshold: faces reported from this score
    read_threads:  threads decoding a batch's images
    """

    def __init__(self, options: dict, vis_threshold: float = DEFAULT_VIS_THRESHOLD, read_threads: int = 2):
        from runtime.detector import Detector
        from runtime.jobs.pipeline import BatchRunner

        self.detector = Detector.from_options(**{"device": "auto", **options})
        self.run = BatchRunner(self.detector, JobSettings(vis_threshold=vis_threshold, read_threads=read_threads))
        self._pool = ThreadPoolExecutor(read_threads, thread_name_prefix="retinaface-decode")

    def __call__(self, batch: dict) -> dict:
        """``{"bytes": [...], "path": [...]}`` (numpy batch format) → the output columns (see the module doc)."""
        paths = [str(path) for path in batch["path"]]
        decoded = list(self._pool.map(self._decode, range(len(paths)), paths, batch["bytes"]))
        readable = [item for item in decoded if item.image is not None]
        outcomes = [failed(item.task, item.error) for item in decoded if item.image is None]
        outcomes = sorted(outcomes + (self.run.now(readable) if readable else []), key=lambda outcome: outcome.index)
        records = [outcome.record for outcome in outcomes]
        return {"image": np.array(paths, dtype=object),
                "faces": np.array([len(record["faces"]) for record in records], dtype=np.int64),
                "error": np.array([record.get("error") for record in records], dtype=object),
                "record": np.array([to_json(record) for record in records], dtype=object)}

    def _decode(self, index: int, path: str, data) -> Decoded:
        from runtime.image_io import decode_image

        task = Task(index, path)
        try:
            return Decoded(task, decode_image(bytes(data), source=path, max_pixels=self.detector.max_pixels))
        except RetinaFaceError as failure:
            return Decoded(task, None, str(failure))


def detect_dataset(source, *, actors: int = 1, num_gpus: float = 1.0, batch: int = 8, read_threads: int = 2,
                   vis_threshold: float = DEFAULT_VIS_THRESHOLD, **options):
    """A Ray Dataset of records (see the module doc) for ``source``: paths or folders for
    ``ray.data.read_binary_files``, or a Dataset with its ``bytes`` and ``path`` columns.

    actors: actors in the pool (one per GPU to use); num_gpus: GPUs each actor holds (0 on CPU-only nodes, with
    ``device="cpu"`` in ``options``); batch: images per call; read_threads: decoding threads (and CPUs reserved)
    per actor; ``options`` go to :class:`FaceDetection`. The work runs when the Dataset is consumed.
    """
    ray = import_ray()
    dataset = source if isinstance(source, ray.data.Dataset) else ray.data.read_binary_files(source, include_paths=True)
    return dataset.map_batches(FaceDetection, batch_size=batch, batch_format="numpy",
                               fn_constructor_kwargs={"options": options, "vis_threshold": vis_threshold,
                                                      "read_threads": read_threads},
                               compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=num_gpus,
                               num_cpus=read_threads)


def write_records(dataset, path, force: bool = False) -> int:
    """Write the records of ``dataset`` (from :func:`detect_dataset`) to ``path`` as detect's JSON Lines, through
    this process, atomically (:func:`retinaface_trt.fileio.atomic_write`); return how many were written."""
    from retinaface_trt.fileio import atomic_write

    count = 0
    with atomic_write(path, "w", force=force) as handle:
        for row in dataset.iter_rows():
            handle.write(row["record"] + "\n")
            count += 1
    return count
