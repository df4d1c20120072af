"""Runs ON the GPU machine (from tools/gpu_session.sh): joins the parts that tools/gpu_parts.sh cut,
an xz tar of the onnxruntime-gpu wheel, into a folder for PYTHONPATH. Safe to run twice.

    python3 tools/ort_gpu_join.py /root/og /tmp/site
"""

import glob
import lzma
import os
import shutil
import sys
import tarfile


class Joined:
    """The parts, in order, read as one stream."""

    def __init__(self, paths):
        self.files = [open(p, "rb") for p in paths]

    def read(self, n=-1):
        out = b""
        while self.files and (n < 0 or len(out) < n):
            chunk = self.files[0].read(-1 if n < 0 else n - len(out))
            if not chunk:
                self.files.pop(0).close()
            out += chunk
        return out


def main(parts_dir: str, site: str) -> None:
    if os.path.exists(os.path.join(site, "onnxruntime", "__init__.py")):
        print(f"onnxruntime-gpu already in {site}")
        return
    parts = sorted(glob.glob(os.path.join(parts_dir, "p.*")), key=lambda p: int(p.rsplit(".", 1)[1]))
    if not parts:
        sys.exit(f"no parts p.* in {parts_dir}: move them there first (see tools/gpu_parts.sh)")
    partial = site + ".partial"  # renamed once whole: a broken join leaves no half-filled site behind
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(fileobj=lzma.LZMAFile(Joined(parts)), mode="r|") as tar:
            tar.extractall(partial)
    except (EOFError, lzma.LZMAError, tarfile.TarError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        sys.exit(f"the {len(parts)} parts in {parts_dir} do not make the whole archive ({exc}): is one missing?")
    shutil.rmtree(site, ignore_errors=True)
    os.rename(partial, site)
    print(f"onnxruntime-gpu unpacked from {len(parts)} parts into {site}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
