"""Detectors made with PyTorch: a trained window classifier converted to a detector
(`netspec convert --fully-convolutional`, netspec.detect.convert). Running a detector file
is the deployment side's, without torch: netspec.runtime.detect."""
