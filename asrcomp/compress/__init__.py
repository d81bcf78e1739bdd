"""Compression stages. Each reads a model dir and writes a model dir of the same kind.

The factorised layer types (and the ``arch["factorized"]`` record that ``build_model``
rebuilds them from) are in :mod:`asrcomp.nnet.factorized`; this package computes their factors.

- :mod:`~asrcomp.compress.layers`: find the layers to factorise by name pattern;
- :mod:`~asrcomp.compress.svd`: truncated SVD of a Linear / Conv1d weight;
- :mod:`~asrcomp.compress.dense`: what the tensorisations share (mode shapes, rank search);
- :mod:`~asrcomp.compress.tt`, :mod:`~asrcomp.compress.tucker`, :mod:`~asrcomp.compress.cp`:
  tensor-train matrix, Tucker and CP factorisations of a weight reshaped to ``2d`` modes;
- :mod:`~asrcomp.compress.stage`: the ``asrcomp compress`` stage (restructure, report, fine-tune);
- :mod:`~asrcomp.compress.distill`: knowledge distillation into a smaller student (``asrcomp distill``);
- :mod:`~asrcomp.compress.pack`: Deep Compression (``asrcomp pack`` / ``unpack``), with
  :mod:`~asrcomp.compress.prune`, :mod:`~asrcomp.compress.kmeans`, :mod:`~asrcomp.compress.share`
  (weight sharing), :mod:`~asrcomp.compress.huffman` / :mod:`~asrcomp.compress.ans` (coders),
  :mod:`~asrcomp.compress.pack_format` (the ``.acz`` file), :mod:`~asrcomp.compress.pack_report`,
  :mod:`~asrcomp.compress.alloc` (bits per tensor under a byte budget);
- :mod:`~asrcomp.compress.quant` (``asrcomp quantize``, its codes in :mod:`~asrcomp.compress.codes`)
  and :mod:`~asrcomp.compress.peers` (``asrcomp peer``: fp16 / int8 + zstd).

Modules here may import nnet, train/decode and data modules, never the commands above them
(``tests/test_layering.py``).
"""
