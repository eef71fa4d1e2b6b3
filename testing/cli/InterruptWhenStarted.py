"""Runs a command, sends it one Ctrl-C (SIGINT) once it has said that it
started, and exits with its status (128 + n when killed by signal n).

    python3 InterruptWhenStarted.py [--timeout S] -- COMMAND ARGS...

"Started" is the first progress text on its standard error: `jko train`
writes each progress line as "\\r<message>" from its progress callback, which
runs only after its Ctrl-C handler is installed. A fixed delay instead raced
with a slow start (a loaded machine, a sanitized build): a signal before the
handler kills the process silently. The command's output is passed through;
a command that neither starts nor ends within the timeout is killed
(SIGKILL) and reported.
"""
import argparse
import signal
import subprocess
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=600, help="seconds before the command is killed")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = threading.Event()
    errors, output = [], []

    def read_errors():
        pending = b""
        while True:
            chunk = process.stderr.read1(4096) if hasattr(process.stderr, "read1") else process.stderr.read(1)
            if not chunk:
                break
            errors.append(chunk)
            pending = (pending + chunk)[-4096:]
            # A progress text: a carriage return followed by a visible character.
            if not started.is_set():
                for i, byte in enumerate(pending[:-1]):
                    if byte == ord("\r") and not chr(pending[i + 1]).isspace():
                        started.set()
                        break

    def read_output():
        for chunk in iter(lambda: process.stdout.read(4096), b""):
            output.append(chunk)

    readers = [threading.Thread(target=read_errors), threading.Thread(target=read_output)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + args.timeout
    while not started.is_set() and process.poll() is None and time.monotonic() < deadline:
        started.wait(0.05)
    interrupted = started.is_set() and process.poll() is None
    if interrupted:
        process.send_signal(signal.SIGINT)
    try:
        status = process.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        status = process.wait()
        errors.append(b"\nInterruptWhenStarted: killed after %g s\n" % args.timeout)
    for reader in readers:
        reader.join()
    if not interrupted:
        errors.append(b"\nInterruptWhenStarted: the command ended or timed out before it said it started\n")
    sys.stdout.buffer.write(b"".join(output))
    sys.stderr.buffer.write(b"".join(errors))
    sys.exit(128 - status if status < 0 else status)


if __name__ == "__main__":
    main()
