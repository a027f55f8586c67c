"""ov3d_ros: open-vocabulary 3D segmentation for ROS 2.

Layout (data flows one way):
    io/     bytes <-> arrays: PointCloud2, rosbag2, PLY/PCD/npz, the Scan type
    core/   no ROS imports: voxels, student network, geometry-guided pooling, text, queries, objects
    node/   rclpy only here: the segment node, markers, diagnostics, demo
    eval/, bench/   the ov3d-eval and ov3d-bench commands
"""

__version__ = "0.1.0"
