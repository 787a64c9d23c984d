"""Differential-test backend on Python's h11 parser. Prints one JSON line per
request it parsed ({"m","t","n"}: method, target, body bytes) and one per
connection it refused ({"error"}), then answers 200. Also serves as the
upstream of the nginx backend, recording what nginx parsed and forwarded."""
import json
import socket
import sys
import threading

import h11

lock = threading.Lock()


def log(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def serve(sock):
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    current = None
    try:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                log({"error": str(e)})
                return
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Request):
                current = {"m": event.method.decode("latin-1"),
                           "t": event.target.decode("latin-1"), "n": 0}
            elif isinstance(event, h11.Data):
                current["n"] += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                log(current)
                out = conn.send(h11.Response(status_code=200, headers=[("Content-Length", "2")]))
                out += conn.send(h11.Data(data=b"ok")) + conn.send(h11.EndOfMessage())
                sock.sendall(out)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (OSError, h11.LocalProtocolError):
        return
    finally:
        sock.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    log({"port": listener.getsockname()[1]})
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
