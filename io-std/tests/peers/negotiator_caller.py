import json, logging, os, socket, sys
logging.disable(logging.CRITICAL)
from negotiator_common import NegotiatorInterface, RemoteMethodFailed
path, mode = sys.argv[1], sys.argv[2]
if mode == "connect":
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
else:
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(60)
    print("ready", flush=True)
    conn, _ = server.accept()
interface = NegotiatorInterface(conn.makefile("rw", encoding="utf-8"), "test")
def call(*args, **kw):
    try:
        return {"result": interface.call_remote_method(*args, **kw)}
    except RemoteMethodFailed as e:
        return {"error": str(e)}
outcomes = [call(*c["args"], **c.get("kw", {})) for c in json.loads(sys.argv[3])]
print(json.dumps(outcomes), flush=True)
conn.close()
