"""A XenAPI-shaped XML-RPC server on Python's xmlrpc.server, for vmwire's
interop tests: sessions, VMs, failures, SESSION_INVALID, nil/base64/dateTime,
faults, tasks. Prints "PORT <n>" once it listens.

    python3 xenapi_server.py [--port N] [--gzip] [--http11] [--tls CERT KEY]
"""
import argparse
import base64
import datetime
import socketserver
import time
import ssl
import sys
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--vms", type=int, default=3)
parser.add_argument("--gzip", action="store_true")
parser.add_argument("--http11", action="store_true")
parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
args = parser.parse_args()


SEEN = {"connections": 0, "accept_encoding": None}


class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/", "/RPC2")

    def setup(self):
        SEEN["connections"] += 1
        super().setup()

    def do_POST(self):
        SEEN["accept_encoding"] = self.headers.get("Accept-Encoding")
        super().do_POST()

    # Python gzips bodies over 1,400 bytes when the client offers gzip.
    encode_threshold = 1400 if args.gzip else None
    protocol_version = "HTTP/1.1" if args.http11 else "HTTP/1.0"


class Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True


def ok(value):
    return {"Status": "Success", "Value": value}


def fail(*description):
    return {"Status": "Failure", "ErrorDescription": list(description)}


class Xapi:
    def __init__(self, vms):
        self.sessions = {}
        self.counter = 0
        self.tasks = {}
        self.vms = {}
        for i in range(vms):
            ref = "OpaqueRef:vm-%04d" % i
            self.vms[ref] = {
                "uuid": "00000000-0000-0000-0000-%012d" % i,
                "name_label": "café <&> ☃" if i == 2 else "vm-%04d" % i,
                "name_description": "synthetic VM %d" % i,
                "power_state": "Running" if i % 2 == 0 else "Halted",
                "is_a_template": False,
                "is_control_domain": False,
                "memory_static_max": "4294967296",
                "memory_dynamic_min": "1073741824",
                "VCPUs_max": str(2 + i % 4),
                "VCPUs_at_startup": "2",
                "resident_on": "OpaqueRef:host" if i % 2 == 0 else "OpaqueRef:NULL",
                "metrics": "OpaqueRef:metrics-%04d" % i,
                "other_config": {"folder": "/bench", "index": str(i)},
                "VIFs": ["OpaqueRef:vif-%d" % i],
                "VBDs": [],
                "tags": ["even" if i % 2 == 0 else "odd"],
                "snapshot_time": xmlrpc.client.DateTime("19700101T00:00:00Z"),
                "HVM_shadow_multiplier": 1.0,
            }

    def new_session(self, user):
        self.counter += 1
        ref = "OpaqueRef:session-%d" % self.counter
        self.sessions[ref] = user
        return ref

    def vm(self, ref):
        if ref not in self.vms:
            raise LookupError(ref)
        return self.vms[ref]

    def _dispatch(self, method, params):
        # Hooks for the tests, without a session.
        if method == "debug.invalidate_sessions":
            self.sessions.clear()
            return ok("")
        if method == "debug.sessions":
            return ok(len(self.sessions))
        if method == "debug.seen":
            return ok({k: v or "" for k, v in SEEN.items()})
        if method == "session.login_with_password":
            user, password = params[0], params[1]
            if (user, password) != ("root", "secret"):
                return fail("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
            return ok(self.new_session(user))
        if method == "session.slave_local_login_with_password":
            return ok(self.new_session(params[0]))
        if not params or params[0] not in self.sessions:
            return fail("SESSION_INVALID", params[0] if params and params[0] else "")
        session, rest = params[0], params[1:]
        if method in ("session.logout", "session.local_logout"):
            del self.sessions[session]
            return ok("")
        try:
            return self.call(method, rest)
        except LookupError as e:
            return fail("HANDLE_INVALID", method.split(".")[0], str(e.args[0]))

    def call(self, method, rest):
        if method == "VM.get_all":
            return ok(list(self.vms))
        if method == "VM.get_all_records":
            return ok(self.vms)
        if method == "VM.get_record":
            return ok(self.vm(rest[0]))
        if method.startswith("VM.get_") and method[7:] in self.vm(rest[0]):
            return ok(self.vm(rest[0])[method[7:]])
        if method == "VM.start":
            vm = self.vm(rest[0])
            if vm["power_state"] != "Halted":
                return fail("VM_BAD_POWER_STATE", rest[0], "halted", vm["power_state"].lower())
            vm["power_state"] = "Paused" if rest[1] else "Running"
            return ok("")
        if method in ("VM.pause", "VM.unpause"):
            vm = self.vm(rest[0])
            want, to = ("Running", "Paused") if method == "VM.pause" else ("Paused", "Running")
            if vm["power_state"] != want:
                return fail("VM_BAD_POWER_STATE", rest[0], want.lower(), vm["power_state"].lower())
            vm["power_state"] = to
            return ok("")
        if method == "VM.set_name_description":
            self.vm(rest[0])["name_description"] = rest[1]
            return ok(None)
        if method == "VM.get_blob":
            return ok(xmlrpc.client.Binary(b"\x00\x01\x02binary\xff\xfe"))
        if method == "VM.sleep":  # a call that takes its time (seconds)
            time.sleep(float(rest[0]))
            return ok("")
        if method == "VM.echo":
            # What Python made of each param.
            return ok([repr(x) for x in rest])
        if method == "SR.create":
            # Whether the storage's password came through as sent.
            device_config = rest[1]
            return ok("OpaqueRef:sr-" + ("ok" if device_config.get("password") == "s3cret" else "bad"))
        if method == "VM.crash":
            raise xmlrpc.client.Fault(-32500, "explicit fault from VM.crash")
        if method == "VM_metrics.get_memory_actual":
            return ok("268435456")
        if method == "VM_metrics.get_VCPUs_utilisation":
            return ok({"0": 0.5, "1": 0.25})
        if method == "Async.VM.start":
            result = self.call("VM.start", rest)
            task = "OpaqueRef:task-%d" % (len(self.tasks) + 1)
            self.tasks[task] = {"polls": 0, "result": result}
            return ok(task)
        if method.startswith("task."):
            task = self.tasks[rest[0]] if rest[0] in self.tasks else None
            if task is None:
                raise LookupError(rest[0])
            if method == "task.get_status":
                task["polls"] += 1
                if task["polls"] < 3:
                    return ok("pending")
                return ok("success" if task["result"]["Status"] == "Success" else "failure")
            if method == "task.get_result":
                return ok("<value>%s</value>" % task["result"]["Value"] if task["result"]["Value"] else "")
            if method == "task.get_error_info":
                return ok(task["result"]["ErrorDescription"])
            if method == "task.destroy":
                del self.tasks[rest[0]]
                return ok("")
        raise Exception('method "%s" is not supported' % method)


server = Server(("127.0.0.1", args.port), requestHandler=Handler, allow_none=True, logRequests=False)
server.register_instance(Xapi(args.vms))
if args.tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.tls[0], args.tls[1])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("PORT %d" % server.server_address[1], flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
sys.exit(0)
