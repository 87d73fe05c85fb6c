"""Runtime: ONNX Runtime sessions on exported models, input files to batches, benchmarks."""
