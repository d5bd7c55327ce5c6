"""The image's tools (standard library only): ``python3 -m image.qemuboot`` boots an image in QEMU,
``python3 -m image.disk`` reads and sizes its partitions. Run from the repository root (the
shell scripts here set PYTHONPATH to it); tests import them as ``from image import qemuboot``.
"""
