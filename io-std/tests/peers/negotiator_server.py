import logging, socket, sys
logging.disable(logging.CRITICAL)
import negotiator_common
negotiator_common.USER_COMMANDS_DIRECTORY = sys.argv[2]
from negotiator_common import NegotiatorInterface
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(1)
server.settimeout(60)
print("ready", flush=True)
conn, _ = server.accept()
interface = NegotiatorInterface(conn.makefile("rw", encoding="utf-8"), "test")
try:
    interface.enter_main_loop()
except Exception as e:
    try:
        print("ended", type(e).__name__, flush=True)
    except BrokenPipeError:
        pass
