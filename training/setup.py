"""ov3d_training: learning the ov3d_ros student offline (simulator, MPEC teacher, distillation,
calibration, accuracy report). A separate distribution from the robot's ``ov3d_ros``: a robot
installs only that; a developer installs both with the README's one command."""

from setuptools import find_packages, setup

setup(
    name="ov3d_training",
    version="0.1.0",
    description="Offline training for ov3d_ros: simulated rooms, MPEC teacher, GeoPurify distillation",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ov3d_training", "ov3d_training.*"]),
    install_requires=[
        "ov3d_ros",  # the network, the segmenter and the readers it trains for
        # only what the simulator and the trainers need beyond inference
        "pybullet==3.2.7",
        "tensorboard>=2.15",
        "tqdm>=4.66",
    ],
    zip_safe=False,
    entry_points={"console_scripts": ["ov3d-train = ov3d_training.cli:main"]},
)
