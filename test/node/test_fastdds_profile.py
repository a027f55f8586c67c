"""config/fastdds_large_clouds.xml lets large BEST_EFFORT clouds through between processes.

Two processes, best effort on both sides, 12 clouds of 1.3 MB at 5 Hz: without the profile
Fast DDS's default shared-memory segment (512 KiB) drops them; with it all 12 arrive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROFILE = HERE.parents[1] / "ov3d_ros" / "config" / "fastdds_large_clouds.xml"
PROBE = HERE / "cloud_probe.py"
COUNT = 12
NS = "{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}"


def _transfer(domain_id: int, megabytes: float, profile: Path | None, reliability: str = "best_effort") -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    for var in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML"):
        env.pop(var, None)
    if profile is not None:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    common = ["--count", str(COUNT), "--reliability", reliability, "--mb", str(megabytes)]
    sub = subprocess.Popen(
        [sys.executable, str(PROBE), "sub", *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        pub = subprocess.run(
            [sys.executable, str(PROBE), "pub", *common], env=env, capture_output=True, text=True, timeout=90
        )
        sub_out, sub_err = sub.communicate(timeout=90)
    finally:
        sub.kill()
    assert pub.returncode == 0, pub.stderr[-2000:]
    assert sub.returncode == 0, sub_err[-2000:]
    sent = json.loads(pub.stdout.strip().splitlines()[-1])
    received = json.loads(sub_out.strip().splitlines()[-1])
    assert sent["matched"] == 1, f"the two processes never matched: {sent}"
    return {**sent, **received, "stderr": sub_err + pub.stderr}


def test_profile_is_valid_fastdds_xml():
    root = ET.parse(PROFILE).getroot()
    assert root.tag == f"{NS}profiles"
    descriptors = {d.findtext(f"{NS}transport_id"): d for d in root.iter(f"{NS}transport_descriptor")}
    shm = descriptors["ov3d_large_shm"]
    assert shm.findtext(f"{NS}type") == "SHM" and int(shm.findtext(f"{NS}segment_size")) >= 16 * 2**20
    participant = root.find(f"{NS}participant")
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iter(f"{NS}transport_id")]
    assert set(used) == set(descriptors), "every transport the participant uses must be declared"
    assert participant.findtext(f"{NS}rtps/{NS}useBuiltinTransports") == "false"


def test_large_best_effort_clouds_arrive_with_the_profile(ros_domain_id):
    with_profile = _transfer(ros_domain_id, 1.3, PROFILE)
    assert "error" not in with_profile["stderr"].lower(), with_profile["stderr"][-2000:]
    assert with_profile["received"] == COUNT, f"with the profile only {with_profile['received']} of {COUNT} arrived"


def test_large_best_effort_clouds_are_lost_without_it(ros_domain_id):
    """The trap the profile exists for; if this starts passing 12 of 12, re-measure and update
    the docs (qos.py, the profile's comment), the profile may no longer be needed."""
    baseline = _transfer(ros_domain_id, 1.3, None)
    assert baseline["received"] < COUNT, "default Fast DDS delivered every large best-effort cloud"
    small = _transfer(ros_domain_id, 0.3, None)
    assert small["received"] == COUNT, f"small clouds should pass without a profile: {small['received']}/{COUNT}"


def test_ten_megabyte_clouds_with_the_profile(ros_domain_id):
    result = _transfer(ros_domain_id, 10.0, PROFILE)
    assert result["received"] == COUNT
