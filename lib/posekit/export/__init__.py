"""Export stage: a trained model -> files a runtime runs, checked against the dygraph model.

* :mod:`.exporter` - :func:`export_model` (what ``export.py`` calls), :class:`ExportResult`,
  :func:`default_output_dir`;
* :mod:`.paddle_model` - ``paddle.jit.save`` with export-friendly tracing;
* :mod:`.onnx_model` - paddle2onnx conversion and graph tidy-up;
* :mod:`.parity` - parity inputs and the comparison of runners;
* :mod:`.quantize` - static int8 ONNX quantisation;
* :mod:`.errors` - :class:`ExportError`.
"""
