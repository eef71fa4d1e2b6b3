"""The plugin in client-server mode: starts a pvserver on 127.0.0.1, runs
ClientServerSession.py as its client in a second pvpython (the plugin is
loaded on both sides there), and checks that the client passed and that the
server exited cleanly once the client disconnected."""
import os
import shutil
import socket
import subprocess
import sys

pvserver = os.environ.get("JKO_PVSERVER") or shutil.which("pvserver")
pvpython = os.environ.get("JKO_PVPYTHON") or shutil.which("pvpython")
client_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ClientServerSession.py")

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

server = subprocess.Popen([pvserver, "--server-port=%d" % port, "--hostname=127.0.0.1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    for line in server.stdout:
        if "Accepting connection" in line:
            break
    client = subprocess.run([pvpython, client_script, str(port)], timeout=240)
    # pvserver exits once its client has gone.
    output, _ = server.communicate(timeout=60)
    print(output)
    if client.returncode != 0:
        sys.exit("the client session failed")
    if server.returncode != 0:
        sys.exit("pvserver exited with %d" % server.returncode)
    print("client-server session passed; pvserver exited cleanly")
finally:
    if server.poll() is None:
        server.kill()
