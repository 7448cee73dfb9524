"""Runs moto's server for Ferrocart's local cloud and tests.

Usage: python moto_server.py HOST PORT

Prints READY once it accepts requests, then serves until its standard input closes. The parent
(the local cloud or a test binary) holds the other end of that pipe, so when the parent exits for
any reason - Ctrl-C, a panic, a killed test run - moto exits too and no emulator is left behind.
"""

import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
