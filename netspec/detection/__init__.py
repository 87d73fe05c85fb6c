"""Detection: boxes, non-maximum suppression and COCO's mAP (numpy and pycocotools; no torch)."""
