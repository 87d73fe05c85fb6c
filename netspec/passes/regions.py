"""Sets of regions: which tensors are RoI sets and which count regions, not images.

Shapes are per image. Two kinds of tensor need more than a shape to be told apart:

- a RoI set, K boxes of each image (K x 4 corners, or K x 5 with a score): what `proposals`
  makes (`OpDef.makes_rois`), or a network input of that shape;
- a tensor of regions, ``K x ...`` per image whose leading axis is K regions: what a RoI
  pooling makes (`OpDef.reads_rois`), and what every operation after it makes, applied per
  region: its rules see one region's shape (``C x 7 x 7``: a `dense` flattens one region,
  a `conv` slides over one region's bins) and its output gets the K back.

`infer` asks `Kinds` before each node's rules, and a mismatch (an image map where a RoI
pooling reads its RoI set, regions where it reads maps, regions merged with images) is a
`ShapeError` at the node. This module is no pass of its own: kinds and shapes are decided
together, node by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from netspec.ir import Graph, Node, Shape
from netspec.ops import RF, Cost, OpDef, ShapeError
from netspec.text import fmt_shape

BOX_FIELDS = (4, 5)


def _is_roi_shape(shape: Shape) -> bool:
    return len(shape) == 2 and isinstance(shape[0], int) and shape[1] in BOX_FIELDS


@dataclass
class Kinds:
    """The RoI sets and the tensors of regions (with their K) among the nodes seen so far."""

    rois: set[str] = field(default_factory=set)
    regions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, graph: Graph) -> Kinds:
        """The network's inputs of K x 4 or K x 5 are RoI sets."""
        return cls(rois={i.name for i in graph.inputs if _is_roi_shape(i.shape)})

    def per_region(self, node: Node, opdef: OpDef) -> int:
        """K where the node is applied per region, 0 where not; a ShapeError where its inputs'
        kinds do not fit it."""
        if opdef.reads_rois:
            self._check_roi_inputs(node)
            return 0
        if opdef.head:  # a head reads each image's tensors whole (two_stage: RoIs, regions)
            return 0
        counts = [self.regions.get(i, 0) for i in node.inputs]
        if not any(counts):
            return 0
        if not all(counts) or len(set(counts)) > 1:
            parts = ", ".join(
                f"'{i}' " + (f"{k} regions of each image" if k else "images")
                for i, k in zip(node.inputs, counts, strict=True)
            )
            raise ShapeError(
                f"it merges tensors of different leading axes: {parts}",
                hint="merge tensors of the same RoI pooling, or pool the images' maps too",
            )
        return counts[0]

    def _check_roi_inputs(self, node: Node) -> None:
        *maps, rois = node.inputs
        if rois not in self.rois:
            what = f"{self.regions[rois]} regions" if rois in self.regions else "not a RoI set"
            raise ShapeError(
                f"it reads a RoI set as its last input; '{rois}' is {what}",
                hint="give it proposals(...) or an input of K x 4 boxes, e.g. "
                f"{node.op}(features, rois, ...)",
            )
        for name in maps:
            if name in self.regions:
                raise ShapeError(
                    f"it pools an image's feature maps; '{name}' holds "
                    f"{self.regions[name]} regions of each image (it comes after a RoI pooling)",
                    hint="pool from the backbone's maps",
                )

    def record(self, node: Node, opdef: OpDef, shape: Shape, per_region: int) -> None:
        """What the node's output is, once its shape is known."""
        if opdef.makes_rois:
            self.rois.add(node.name)
        elif opdef.reads_rois and isinstance(shape[0], int):
            self.regions[node.name] = shape[0]
        elif per_region:
            self.regions[node.name] = per_region


def one_region(shape: Shape, k: int) -> Shape:
    """A tensor of regions' per-image shape, one region's: ``K x C x 7 x 7`` -> ``C x 7 x 7``."""
    if len(shape) < 2 or shape[0] != k:
        raise ShapeError(f"a tensor of {k} regions is {fmt_shape(shape)}")
    return shape[1:]


def shape_and_cost(
    opdef: OpDef, node: Node, in_shapes: Sequence[Shape], k: int
) -> tuple[Shape, Cost]:
    """The node's output shape and cost; applied per region (k > 0), its rules see one
    region and the cost is k regions'."""
    if not k:
        shape = opdef.shape(node.params, in_shapes)
        return shape, opdef.cost(node.params, in_shapes, shape)
    ones = [one_region(s, k) for s in in_shapes]
    one = opdef.shape(node.params, ones)
    cost = opdef.cost(node.params, ones, one)
    return (k, *one), replace(cost, macs=None if cost.macs is None else k * cost.macs)


def per_region_rf(given: RF, computed: RF) -> RF:
    """A per-region unit's field: its input's region (bin, or whole region once it is
    reduced), grown by the backbone's field as before."""
    return replace(given, whole=given.whole or computed.whole)
