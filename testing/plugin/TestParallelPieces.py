"""The flow under MPI: a serial run of ParallelPiecesSession.py writes the
frames, then the same cases run on N ranks and are compared with them.

    TestParallelPieces.py N pvbatch             # mpirun -np N pvbatch
    TestParallelPieces.py N pvbatch-symmetric   # mpirun -np N pvbatch --symmetric
    TestParallelPieces.py N pvserver            # mpirun -np N pvserver, a pvpython client on 127.0.0.1

Run it with python3, not pvpython: pvpython starts MPI as a singleton and
the variables that leaves in the environment derail a child mpirun.

Besides the session's own checks, the line Auto prints at the end of a run
and the Learned + refine warning must each appear once in the output of all
ranks together (the first rank says them). Exits 77 (the test's
SKIP_RETURN_CODE) when there is no mpirun or pvbatch/pvserver has no MPI.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading

ranks, kind, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
here = os.path.dirname(os.path.abspath(__file__))
session = os.path.join(here, "ParallelPiecesSession.py")
mpirun = os.environ.get("JKO_MPIEXEC") or shutil.which("mpirun") or shutil.which("mpiexec")
pvbatch = os.environ.get("JKO_PVBATCH") or shutil.which("pvbatch")
pvserver = os.environ.get("JKO_PVSERVER") or shutil.which("pvserver")
pvpython = os.environ.get("JKO_PVPYTHON") or shutil.which("pvpython")
SKIP = 77
if not mpirun:
    print("no mpirun or mpiexec: the parallel test is skipped")
    sys.exit(SKIP)

# Open MPI refuses root without --allow-run-as-root and more ranks than cores
# without --oversubscribe; other MPIs take neither flag.
launcher = [mpirun]
version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
if "Open MPI" in version or "OpenRTE" in version:
    launcher += ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
launcher += ["-np", str(ranks)]
environment = dict(os.environ, OMP_NUM_THREADS="1")

shutil.rmtree(folder, ignore_errors=True)
os.makedirs(folder)


def run(command, timeout=240, **options):
    """Runs `command` in its own process group (mpirun's ranks go with it on a timeout)."""
    print("+", " ".join(command), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment, start_new_session=True, **options)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        print(output)
        sys.exit("timed out after %d s: %s" % (timeout, " ".join(command)))
    print(output, flush=True)
    return process.returncode, output


code, _ = run([pvbatch, session, "reference", folder])
if code != 0:
    sys.exit("the serial reference run failed")

if kind == "pvserver":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(launcher + [pvserver, "--server-port=%d" % port, "--hostname=127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
                              start_new_session=True)
    # A thread reads the server's output; the test waits a minute at most for
    # it to listen (a hung mpirun must not outlive the test).
    lines, listening = [], threading.Event()

    def read_server():
        for line in server.stdout:
            lines.append(line)
            if "Accepting connection" in line:
                listening.set()
        listening.set()  # it ended: the client will say it cannot connect

    reader = threading.Thread(target=read_server, daemon=True)
    reader.start()
    try:
        if not listening.wait(60):
            sys.exit("mpirun pvserver did not start within a minute:\n" + "".join(lines))
        code, output = run([pvpython, session, "client", folder, str(port)])
        server.wait(timeout=60)  # pvserver exits once its client has gone
        reader.join(timeout=10)
        print("".join(lines))
        output += "".join(lines)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
else:
    code, output = run(launcher + [pvbatch] + (["--symmetric"] if kind == "pvbatch-symmetric" else []) +
                       [session, "compare", folder])
if code == SKIP or "it was built without MPI" in output:
    sys.exit(SKIP)
failures = []
if code != 0:
    failures.append("the parallel session failed (exit code %d)" % code)
if kind == "pvserver":
    # The server's messages reach the client too: each is counted there and in the server's output.
    expected = 2
else:
    expected = 1
for phrase in ("JKO Gradient Flow (Auto), frames 1-3:", "JKO Gradient Flow (Learned + refine), frames 1-3:"):
    count = output.count(phrase)
    verdict = "ok    " if count == expected else "FAIL  "
    print(verdict + "'%s' said %d times (expected %d)" % (phrase, count, expected))
    if count != expected:
        failures.append(phrase)
if failures:
    sys.exit("failed: %s" % "; ".join(failures))
print("the flow on %d ranks (%s) gives the serial frames, mass and table" % (ranks, kind))
