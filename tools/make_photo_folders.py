"""Folders of photos for the folder figures of docs/benchmarks.md, made from a few photos.

    python tools/make_photo_folders.py PHOTO... --repeat 2000 --out REPEATED
    python tools/make_photo_folders.py PHOTO... --sizes 100 --per-size 5 --out SIZED [--seed 0]

``--repeat N``: the photos' files copied in turn until there are N (byte copies: decoding them is decoding the
photos). ``--sizes K --per-size M``: K distinct sizes (300 to 1400 px per side, seeded), M JPEGs of each (the
photos in turn, resized with cv2.INTER_AREA, quality 90), shuffled so that files of one size are spread over the
folder as in a real one (names in a seeded random order).
"""

from __future__ import annotations

import argparse
import os
import shutil

import cv2
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--sizes", type=int)
    parser.add_argument("--per-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    photos = sorted(args.photos)
    if args.repeat:
        for i in range(args.repeat):
            source = photos[i % len(photos)]
            shutil.copyfile(source, os.path.join(args.out, f"{i:06d}{os.path.splitext(source)[1]}"))
        print(f"{args.repeat} copies of {len(photos)} photos in {args.out}")
        return
    rng = np.random.default_rng(args.seed)
    sizes: set = set()
    while len(sizes) < args.sizes:
        sizes.add(tuple(int(v) for v in rng.integers(300, 1401, 2)))
    images = [cv2.imread(p) for p in photos]
    jobs = [(size, images[(k * args.per_size + j) % len(images)]) for k, size in enumerate(sorted(sizes))
            for j in range(args.per_size)]
    order = rng.permutation(len(jobs))
    for name, index in enumerate(order):
        (width, height), image = jobs[index]
        cv2.imwrite(os.path.join(args.out, f"{name:06d}.jpg"),
                    cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"{len(jobs)} photos of {len(sizes)} sizes in {args.out}")


if __name__ == "__main__":
    main()
