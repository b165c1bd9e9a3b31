"""Measure what each V4L2 camera library would cost the agent: memory and CPU per 640x480 frame.

The agent's budget is a Pi's (the agent bench's targets: under 60 MB resident,
at most 5 % of a core), so the library for USB cameras is chosen by what it
adds to both. Per candidate, in a fresh interpreter:

- memory: VmRSS after importing what the agent always imports (asyncio,
  grpcio, protobuf, the agent's modules) and then the library, minus the same
  without the library;
- CPU per frame: what the library's path does with a Motion-JPEG camera's
  frame in user space. linuxpy and PyAV hand the camera's JPEG over as bytes
  (a copy of the mapped buffer); OpenCV's VideoCapture decodes each frame to
  BGR, and the agent must encode it again (cv2.imencode). Kernel and USB work
  is the same for all three and not counted. The frame is the simulated
  camera's 640x480 test card.

No camera is needed: run it with an interpreter that has the candidates
(`pip install linuxpy av opencv-python-headless pillow` in a scratch
environment, with this checkout on PYTHONPATH). Figures are in docs/frames.md.

    PYTHONPATH=. /tmp/camvenv/bin/python -m sensormesh_bench.studies.camera_libraries
"""

from __future__ import annotations

import subprocess
import sys

_AGENT_FLOOR = "import asyncio, grpc, google.protobuf, sqlite3, ctypes, mmap"
_CANDIDATES = {
    "linuxpy": "from linuxpy.video import device",
    "av (PyAV)": "import av",
    "opencv-python-headless": "import cv2",
    "pillow": "from PIL import Image, ImageDraw",
}
_RSS = """
import time
{floor}
{stmt}
print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])
"""
_PER_FRAME = """
import io, time
from gateway_agent.inputs.camera_simulated import SimulatedCamera
card = SimulatedCamera("study", 640, 480, 85); card.open(); jpeg = card.capture().data
mapped = bytearray(jpeg)
def best(run, n):
    fastest = float("inf")
    for _ in range(5):
        began = time.process_time()
        for _ in range(n):
            run()
        fastest = min(fastest, (time.process_time() - began) / n)
    return fastest * 1000
print("passthrough (linuxpy, PyAV: the mapped buffer as bytes)", round(best(lambda: bytes(memoryview(mapped)), 2000), 4))
import numpy, cv2
array = numpy.frombuffer(jpeg, numpy.uint8)
def opencv():
    image = cv2.imdecode(array, cv2.IMREAD_COLOR)
    cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
print("OpenCV VideoCapture (decode to BGR) + imencode", round(best(opencv, 50), 3))
from PIL import Image
def pillow():
    out = io.BytesIO(); Image.open(io.BytesIO(jpeg)).save(out, "JPEG", quality=85)
print("Pillow re-encode (the input's reencode option)", round(best(pillow, 50), 3))
print("frame bytes", len(jpeg))
"""


def _rss_kib(statement: str) -> int:
    code = _RSS.format(floor=_AGENT_FLOOR, stmt=statement)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


def main() -> None:
    floor = _rss_kib("pass")
    print(f"agent import floor: {floor / 1024:.1f} MiB resident")
    for name, statement in _CANDIDATES.items():
        try:
            extra = _rss_kib(statement) - floor
        except subprocess.CalledProcessError:
            print(f"{name}: not installed in this interpreter")
            continue
        print(f"{name}: +{extra / 1024:.1f} MiB resident")
    result = subprocess.run([sys.executable, "-c", _PER_FRAME], capture_output=True, text=True, check=False)
    print("CPU per 640x480 frame, ms (best of 5):")
    print(result.stdout.strip() or result.stderr.strip()[-500:])


if __name__ == "__main__":
    main()
