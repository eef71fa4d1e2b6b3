"""Takes a screenshot of the whole ParaView window with the ready-made layout
(examples/jko_layout.pvsm) open, for the README's GUI walkthrough.

    /usr/bin/python3 docs/images/gui_screenshot.py [--out docs/images/gui-layout.png] [--time 0.05] [--screen 1600x1000]

Runs a private virtual X server (Xvfb) whose screen is mirrored to a file
(-fbdir), starts the ParaView GUI on it with the plugin and
examples/open_layout.py, steps through the frames up to the requested time
as the play button does, waits until the layout has been drawn there,
converts the screen (an XWD image) to PNG and stops both processes. Uses a scratch HOME so that the user's ParaView settings are
neither read nor changed (and the welcome dialog stays closed).
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREEN = (1600, 1000)

# Runs inside the GUI (its --script has no __file__: paths come from the
# environment): opens the layout, steps frame by frame to the requested time
# (a jump over many frames whose L-BFGS reports progress lets the GUI render
# in the middle of the update, and ParaView 5.11 then warns "Missing VIEW()"),
# says done.
GUI_SCRIPT = """
import os
from paraview import simple
root = os.environ["JKO_ROOT"]
exec(open(os.path.join(root, "examples", "open_layout.py")).read())
scene, end = simple.GetAnimationScene(), float(os.environ["JKO_LAYOUT_TIME"])
for t in [t for t in simple.GetTimeKeeper().TimestepValues if t < end - 1e-12] + [end]:
    scene.AnimationTime = t
    for view in simple.GetViews():
        simple.Render(view)
open(os.environ["JKO_DONE"], "w").write("done")
"""


def free_display():
    """A display number no X server holds (no lock file)."""
    for number in range(150, 400):
        if not os.path.exists("/tmp/.X%d-lock" % number) and not os.path.exists("/tmp/.X11-unix/X%d" % number):
            return number
    sys.exit("no free X display number")


def xwd_to_png(xwd_path, png_path):
    """Converts Xvfb's 24-bit screen file (XWD, ZPixmap, 32 bits per pixel)
    to a PNG."""
    with open(xwd_path, "rb") as f:
        data = f.read()
    header = struct.unpack(">25I", data[:100])
    header_size, width, height = header[0], header[4], header[5]
    byte_order, bits_per_pixel, bytes_per_line, colours = header[7], header[11], header[12], header[19]
    if bits_per_pixel != 32:
        sys.exit("unexpected XWD layout: %d bits per pixel" % bits_per_pixel)
    pixels = np.frombuffer(data, dtype=np.uint8, count=height * bytes_per_line, offset=header_size + 12 * colours)
    pixels = pixels.reshape(height, bytes_per_line)[:, : 4 * width].reshape(height, width, 4)
    rgb = pixels[:, :, [2, 1, 0]] if byte_order == 0 else pixels[:, :, [1, 2, 3]]
    Image.fromarray(np.ascontiguousarray(rgb)).save(png_path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "gui-layout.png"))
    parser.add_argument("--time", type=float, default=0.05, help="animation time shown")
    parser.add_argument("--plugin-dir", default=os.path.join(ROOT, "build", "lib", "paraview-5.11", "plugins",
                                                             "NeuralJKOFlow"))
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--screen", default="%dx%d" % SCREEN, help="screen (and window) size, WxH")
    args = parser.parse_args()
    screen = tuple(int(v) for v in args.screen.split("x"))

    scratch = tempfile.mkdtemp(prefix="jko-gui-")
    home = os.path.join(scratch, "home")
    os.makedirs(os.path.join(home, ".config", "ParaView"))
    with open(os.path.join(home, ".config", "ParaView", "ParaView5.11.0.ini"), "w") as f:
        f.write("[General]\nGeneralSettings.ShowWelcomeDialog=0\n")
    script = os.path.join(scratch, "open_at_time.py")
    with open(script, "w") as f:
        f.write(GUI_SCRIPT)
    done = os.path.join(scratch, "done")

    display = free_display()
    xvfb = subprocess.Popen(["Xvfb", ":%d" % display, "-screen", "0", "%dx%dx24" % screen, "-fbdir", scratch,
                             "-nolisten", "tcp", "-nocursor"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paraview = None
    try:
        time.sleep(2)
        environment = dict(os.environ, DISPLAY=":%d" % display, HOME=home, JKO_ROOT=ROOT,
                           JKO_LAYOUT_TIME=repr(args.time), JKO_DONE=done, OMP_NUM_THREADS="2")
        paraview = subprocess.Popen(["paraview", "-geometry", "%dx%d+0+0" % screen,
                                     "--plugin-search-paths=" + args.plugin_dir, "--plugins=NeuralJKOFlow",
                                     "--script=" + script], cwd=ROOT, env=environment,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.time()
        while not os.path.exists(done):
            if paraview.poll() is not None or time.time() - start > args.timeout:
                sys.exit("the ParaView GUI did not open the layout (exit %s)" % paraview.poll())
            time.sleep(1)
        time.sleep(5)  # let the GUI repaint its panels and views
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        xwd_to_png(os.path.join(scratch, "Xvfb_screen0"), args.out)
        print("GUI screenshot: %s (%d bytes)" % (os.path.abspath(args.out), os.path.getsize(args.out)))
    finally:
        for process in (paraview, xvfb):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
