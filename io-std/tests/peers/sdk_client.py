"""The official XenAPI Python SDK (PyPI `xenapi`) as a client of vmwire's
XML-RPC server: prints one JSON line per step."""
import json
import sys

import XenAPI

url = sys.argv[1]


def step(name, fn):
    try:
        out = {"step": name, "ok": fn()}
    except XenAPI.Failure as e:
        out = {"step": name, "failure": e.details}
    except Exception as e:  # faults and the rest, as the SDK raises them
        out = {"step": name, "error": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(out, default=str), flush=True)


session = XenAPI.Session(url)
step("login", lambda: session.xenapi.login_with_password("root", "secret", "2.21", "sdk-interop"))
step("bad login", lambda: XenAPI.Session(url).xenapi.login_with_password("root", "wrong", "2.21", "x"))
step("get_all", lambda: session.xenapi.VM.get_all())
vms = session.xenapi.VM.get_all()
step("get_record", lambda: session.xenapi.VM.get_record(vms[1]))
step("start running", lambda: session.xenapi.VM.start(vms[0], False, False))
step("start halted", lambda: session.xenapi.VM.start(vms[1], False, False))
step("memory", lambda: session.xenapi.VM_metrics.get_memory_actual(session.xenapi.VM.get_metrics(vms[0])))
step("nil", lambda: session.xenapi.VM.set_name_description(vms[0], None))
step("blob", lambda: session.xenapi.VM.get_blob(vms[0]).data.hex())
step("crash", lambda: session.xenapi.VM.crash())
# The server forgets every session: the SDK logs in again and retries.
step("invalidate", lambda: XenAPI.Session(url)._ServerProxy__request("debug.invalidate_sessions", ()))
step("after invalidation", lambda: len(session.xenapi.VM.get_all()))
step("logout", lambda: session.xenapi.session.logout())
