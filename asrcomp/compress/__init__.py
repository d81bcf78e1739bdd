"""Compression stages. Each reads a model dir and writes a model dir of the same kind.

- :mod:`~asrcomp.compress.layers`: find layers by name pattern, swap in factorised
  modules, and record that in ``arch["factorized"]`` so ``build_model`` rebuilds it;
- :mod:`~asrcomp.compress.svd`: truncated SVD of a Linear / Conv1d weight;
- :mod:`~asrcomp.compress.dense`: the shared base of the tensorised layers;
- :mod:`~asrcomp.compress.tt`, :mod:`~asrcomp.compress.tucker`, :mod:`~asrcomp.compress.cp`:
  tensor-train matrix, Tucker and CP factorisations of a weight reshaped to ``2d`` modes;
- :mod:`~asrcomp.compress.stage`: the ``asrcomp compress`` stage (restructure, report, fine-tune).
"""
