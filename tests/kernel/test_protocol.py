#!/usr/bin/python3
"""The mile Jupyter kernel (`mile --kernel`) as a frontend sees it: Debian's
jupyter_client drives it through a temporary kernelspec, raw ZeroMQ sockets send
what no client would (wrong signatures, broken frames).

    /usr/bin/python3 tests/kernel/test_protocol.py build/mile [WRAPPER ...]

WRAPPER (e.g. `valgrind --leak-check=full --log-file=vg.%p`) is put before mile in
the kernelspec's argv; timeouts grow tenfold then. Prints "ok N - name" or
"not ok N - name" per check and exits 1 when one failed."""
import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernelspec  # noqa: E402

kernelspec.require_jupyter()
import zmq  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

MILE = sys.argv[1]
WRAPPER = sys.argv[2:]
SLOW = 10 if WRAPPER else 1
SPEC = kernelspec.make_kernelspec(MILE, WRAPPER)

results = []


def check(name):
    def run(fn):
        try:
            fn()
            results.append(True)
            print("ok %d - %s" % (len(results), name), flush=True)
        except Exception:
            results.append(False)
            print("not ok %d - %s" % (len(results), name), flush=True)
            for line in traceback.format_exc().splitlines():
                print("#   " + line, flush=True)
        return fn
    return run


def start():
    """A kernel with its stdout and stderr in files (stdout must stay empty)."""
    out = tempfile.NamedTemporaryFile(prefix="mile-kernel-stdout-", delete=False)
    err = tempfile.NamedTemporaryFile(prefix="mile-kernel-stderr-", delete=False)
    km = KernelManager(kernel_name="mile")
    km.start_kernel(stdout=out, stderr=err)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=30 * SLOW)
    return km, kc, out, err


def collect(kc, msg_id, timeout=10):
    """The iopub messages of one request, up to its idle status: [(type, content)]."""
    msgs, deadline = [], time.time() + timeout * SLOW
    while time.time() < deadline:
        m = kc.get_iopub_msg(timeout=timeout * SLOW)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append((m["msg_type"], m["content"]))
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return msgs
    raise AssertionError("no idle status for %s; got %r" % (msg_id, msgs))


def shell_reply(kc, msg_id, timeout=10):
    while True:
        m = kc.get_shell_msg(timeout=timeout * SLOW)
        if m["parent_header"].get("msg_id") == msg_id:
            return m


def execute(kc, code, **kw):
    """Run a cell: (reply content, iopub messages)."""
    msg_id = kc.execute(code, **kw)
    reply = shell_reply(kc, msg_id, kw.pop("timeout", 10))
    return reply["content"], collect(kc, msg_id)


def stream(msgs, name):
    return "".join(c["text"] for t, c in msgs if t == "stream" and c["name"] == name)


def of_type(msgs, msg_type):
    return [c for t, c in msgs if t == msg_type]


def request(kc, method, *args, **kw):
    msg_id = getattr(kc, method)(*args, **kw)
    reply = shell_reply(kc, msg_id)
    collect(kc, msg_id)
    return reply["content"]


def eq(actual, expected, what=""):
    assert actual == expected, "%s: %r, expected %r" % (what, actual, expected)


def tiny_png():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


km, kc, kout, kerr = start()


@check("kernel_info: lua, .lua, implementation mile, protocol 5.3")
def _():
    c = request(kc, "kernel_info")
    eq(c["status"], "ok")
    eq(c["implementation"], "mile")
    eq(c["protocol_version"], "5.3")
    eq(c["language_info"]["name"], "lua")
    eq(c["language_info"]["file_extension"], ".lua")


@check("execute: print, io.write and io.stdout/stderr:write become stream messages")
def _():
    reply, msgs = execute(kc, 'print("hello", 1, nil)\nio.write("a", 1, 2.5, "\\n")\n'
                              'io.stdout:write("b\\n")\nio.stderr:write("err\\n")')
    eq(reply["status"], "ok")
    eq(stream(msgs, "stdout"), "hello\t1\tnil\na12.5\nb\n", "stdout")
    eq(stream(msgs, "stderr"), "err\n", "stderr")
    eq(msgs[0], ("status", {"execution_state": "busy"}), "first message")
    eq(of_type(msgs, "execute_input")[0]["code"][:5], "print")


@check("execute: the trailing expression is the execute_result; execution_count counts")
def _():
    r1, m1 = execute(kc, "x = 41\nx + 1")
    eq(of_type(m1, "execute_result")[0]["data"]["text/plain"], "42")
    eq(of_type(m1, "execute_result")[0]["execution_count"], r1["execution_count"])
    r2, m2 = execute(kc, "local a = 2\nlocal b = 3\n-- a comment\na * b\n")
    eq(of_type(m2, "execute_result")[0]["data"]["text/plain"], "6")
    eq(r2["execution_count"], r1["execution_count"] + 1, "count")
    _, m3 = execute(kc, 'print("only output")')
    eq(of_type(m3, "execute_result"), [], "a call without values")
    _, m4 = execute(kc, "f = function() return 1, 'two' end\nf()")
    eq(of_type(m4, "execute_result")[0]["data"]["text/plain"], "1\ttwo")
    _, m5 = execute(kc, "g = function(v) return v end\ny = g\n(7)")  # one statement: y = g(7)
    eq(of_type(m5, "execute_result"), [], "y = g (7) is one call")
    r6, m6 = execute(kc, "y")
    eq(of_type(m6, "execute_result")[0]["data"]["text/plain"], "7")
    r7, m7 = execute(kc, "x + 100", silent=True)
    eq(of_type(m7, "execute_result"), [], "silent")
    eq(r7["execution_count"], r6["execution_count"], "silent does not count")


@check("execute: errors give ename, evalue, traceback; syntax errors too; the kernel goes on")
def _():
    reply, msgs = execute(kc, "local t = nil\nreturn t.field")
    eq(reply["status"], "error")
    eq(reply["ename"], "LuaError")
    assert "attempt to index" in reply["evalue"], reply["evalue"]
    assert any("stack traceback" in line for line in reply["traceback"]), reply["traceback"]
    eq(of_type(msgs, "error")[0]["evalue"], reply["evalue"])
    reply, _ = execute(kc, "x = = 1")
    eq(reply["status"], "error")
    assert "unexpected symbol" in reply["evalue"], reply["evalue"]
    reply, msgs = execute(kc, "x")
    eq(of_type(msgs, "execute_result")[0]["data"]["text/plain"], "41")


@check("execute: bytes that are not UTF-8 arrive as U+FFFD")
def _():
    _, msgs = execute(kc, 'io.write("a\\255b ", "h\\xc3\\xa9", "\\n")')
    eq(stream(msgs, "stdout"), "a\ufffdb h\u00e9\n")


@check("execute: a tensor result carries an HTML table; user_expressions are evaluated")
def _():
    reply, msgs = execute(kc, "t = mile.tensor.ones{2, 3}\nt", user_expressions={"n": "t:numel()", "bad": "nope.x"})
    data = of_type(msgs, "execute_result")[0]["data"]
    assert "mile.tensor of size 2x3" in data["text/plain"], data
    assert "<table" in data["text/html"], data
    eq(reply["user_expressions"]["n"]["data"]["text/plain"], "6")
    eq(reply["user_expressions"]["bad"]["status"], "error")


@check("display: markdown, html, png (bytes round trip), tensors")
def _():
    png = tiny_png()
    path = os.path.join(SPEC.name, "tiny.png")
    with open(path, "wb") as f:
        f.write(png)
    _, msgs = execute(kc, 'd = mile.display\nd.markdown("**hi**")\nd.html("<b>x</b>")\n'
                          'd.png(%s, {width = 10})\nd.tensor(mile.tensor.zeros{2})' % json.dumps(path))
    shown = of_type(msgs, "display_data")
    eq(len(shown), 4, "display_data messages")
    eq(shown[0]["data"]["text/markdown"], "**hi**")
    eq(shown[1]["data"]["text/html"], "<b>x</b>")
    eq(base64.b64decode(shown[2]["data"]["image/png"]), png, "png bytes")
    eq(shown[2]["metadata"], {"image/png": {"width": 10}})
    assert "<table" in shown[3]["data"]["text/html"]


@check("help() and help(x) in a cell write on stdout")
def _():
    _, msgs = execute(kc, "help()\nhelp(mile.tensor)")
    text = stream(msgs, "stdout")
    assert "In the mile kernel" in text and "table fields" in text, text


@check("io.read asks the frontend (input_request) when allow_stdin, fails otherwise")
def _():
    msg_id = kc.execute("answer = io.read()\nanswer .. '!'", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=10 * SLOW)
    eq(req["msg_type"], "input_request")
    kc.input("forty-two")
    reply = shell_reply(kc, msg_id)
    eq(reply["content"]["status"], "ok")
    msgs = collect(kc, msg_id)
    eq(of_type(msgs, "execute_result")[0]["data"]["text/plain"], "forty-two!")
    reply, _ = execute(kc, "io.read()", allow_stdin=False)
    eq(reply["status"], "error")
    assert "allow_stdin" in reply["evalue"], reply["evalue"]


@check("complete: fields, methods, file names; cursor positions in code points")
def _():
    c = request(kc, "complete", "mile.te", 7)
    assert "mile.tensor" in c["matches"], c
    eq((c["cursor_start"], c["cursor_end"]), (0, 7))
    code = 's = "\u00e9\u00e9"; t:su'
    c = request(kc, "complete", code, len(code))
    assert "t:sum" in c["matches"], c
    eq((c["cursor_start"], c["cursor_end"]), (len(code) - 4, len(code)))
    code = 'f = "%s/kern' % SPEC.name
    c = request(kc, "complete", code, len(code))
    eq(c["matches"], [SPEC.name + "/kernels/"])


@check("inspect: help text for the name at the cursor; found false for unknown names")
def _():
    c = request(kc, "inspect", "x = mile.tensor.zeros", 21)
    eq(c["found"], True)
    # the documentation of mile.tensor.zeros (mile.doc, lua/mile/cdoc.lua)
    assert c["data"]["text/plain"].startswith("mile.tensor.zeros\nzeros(shape"), c
    c = request(kc, "inspect", "mile.tensor.zeros(", 18)
    eq(c["found"], True, "right after '('")
    c = request(kc, "inspect", "no_such_name", 5)
    eq(c["found"], False)


@check("is_complete: complete, incomplete (<eof>), invalid")
def _():
    eq(request(kc, "is_complete", "x = 1")["status"], "complete")
    eq(request(kc, "is_complete", "x = 1\nx + 1")["status"], "complete")
    c = request(kc, "is_complete", "for i = 1, 2 do")
    eq(c["status"], "incomplete")
    assert "indent" in c
    eq(request(kc, "is_complete", "x = = 1")["status"], "invalid")


def raw_shell():
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("%s://%s:%d" % (km.transport, km.ip, km.shell_port))
    return s


def signed(key, msg_type, content=None):
    header = json.dumps({"msg_id": str(uuid.uuid4()), "session": "raw", "username": "test", "msg_type": msg_type,
                         "version": "5.3", "date": "2024-01-01T00:00:00Z"}).encode()
    parts = [header, b"{}", b"{}", json.dumps(content or {}).encode()]
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for p in parts:
        mac.update(p)
    return [b"<IDS|MSG>", mac.hexdigest().encode()] + parts


def answered(sock, frames, wait=1.0):
    sock.send_multipart(frames)
    return sock.poll(int(wait * 1000 * SLOW)) != 0 and sock.recv_multipart() is not None


@check("raw socket: a correctly signed request is answered (the raw path works)")
def _():
    s = raw_shell()
    assert answered(s, signed(kc.session.key, "kernel_info_request"), 10), "no reply"
    s.close()


@check("wrong signature, bad JSON, missing fields, short messages: no reply, kernel alive")
def _():
    s = raw_shell()
    key = kc.session.key
    bad = [
        signed(b"not-the-key", "kernel_info_request"),
        signed(key, "kernel_info_request")[:1] + [b"0" * 64] + signed(key, "kernel_info_request")[2:],
        [b"<IDS|MSG>"],
        [b"just one frame"],
        [b"no", b"delimiter", b"at", b"all", b"here", b"x"],
    ]
    broken = signed(key, "kernel_info_request")
    broken[2] = b"{not json"
    mac = hmac.new(key, b"".join(broken[2:]), hashlib.sha256)
    broken[1] = mac.hexdigest().encode()
    bad.append(broken)
    no_type = [b"{}", b"{}", b"{}", b"{}"]
    bad.append([b"<IDS|MSG>", hmac.new(key, b"".join(no_type), hashlib.sha256).hexdigest().encode()] + no_type)
    array = [b"[]", b"{}", b"{}", b"{}"]
    bad.append([b"<IDS|MSG>", hmac.new(key, b"".join(array), hashlib.sha256).hexdigest().encode()] + array)
    for i, frames in enumerate(bad):
        assert not answered(s, frames, 0.5), "message %d was answered" % i
    s.close()
    eq(request(kc, "kernel_info")["status"], "ok", "kernel alive")
    c, _ = execute(kc, "kernel_still = 'here'\nkernel_still")
    eq(c["status"], "ok")


@check("execute_request without code: an error reply, no crash")
def _():
    msg = kc.session.msg("execute_request", {})
    kc.shell_channel.send(msg)
    reply = shell_reply(kc, msg["header"]["msg_id"])
    eq(reply["content"]["status"], "error")
    collect(kc, msg["header"]["msg_id"])


@check("interrupt by signal stops `while true do end`; globals survive")
def _():
    execute(kc, "kept = 'yes'")
    msg_id = kc.execute("while true do end")
    time.sleep(0.3 * SLOW)
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, 10)
    eq(reply["content"]["status"], "error")
    eq(reply["content"]["ename"], "Interrupted")
    collect(kc, msg_id)
    _, msgs = execute(kc, "kept")
    eq(of_type(msgs, "execute_result")[0]["data"]["text/plain"], "yes")


@check("interrupt_request on the control channel stops a running cell")
def _():
    msg_id = kc.execute("n = 0\nwhile true do n = n + 1 end")
    time.sleep(0.3 * SLOW)
    msg = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(msg)
    rep = kc.get_control_msg(timeout=10 * SLOW)
    eq(rep["msg_type"], "interrupt_reply")
    eq(rep["content"]["status"], "ok")
    reply = shell_reply(kc, msg_id, 10)
    eq(reply["content"]["ename"], "Interrupted")
    collect(kc, msg_id)
    _, msgs = execute(kc, "n > 0")
    eq(of_type(msgs, "execute_result")[0]["data"]["text/plain"], "true")


@check("heartbeat echoes")
def _():
    s = zmq.Context.instance().socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("%s://%s:%d" % (km.transport, km.ip, km.hb_port))
    s.send(b"ping")
    assert s.poll(5000 * SLOW), "no echo"
    eq(s.recv(), b"ping")
    s.close()


@check("restart: shutdown_request with restart, a fresh kernel answers")
def _():
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=30 * SLOW)
    _, msgs = execute(kc, "kept == nil")
    eq(of_type(msgs, "execute_result")[0]["data"]["text/plain"], "true")


@check("shutdown: shutdown_reply, then the process ends; nothing on its stdout")
def _():
    msg = kc.session.msg("shutdown_request", {"restart": False})
    kc.control_channel.send(msg)
    rep = kc.get_control_msg(timeout=10 * SLOW)
    eq(rep["msg_type"], "shutdown_reply")
    eq(rep["content"]["restart"], False)
    deadline = time.time() + 10 * SLOW
    while km.is_alive() and time.time() < deadline:
        time.sleep(0.1)
    assert not km.is_alive(), "the kernel did not exit"
    kc.stop_channels()
    km.cleanup_resources()
    kout.close()
    with open(kout.name, "rb") as f:
        eq(f.read(), b"", "kernel stdout")


@check("mile --kernel with a bad connection file: status 1, the reason on stderr")
def _():
    p = subprocess.run([MILE, "--kernel", os.path.join(SPEC.name, "missing.json")], capture_output=True, timeout=30)
    eq(p.returncode, 1)
    eq(p.stdout, b"")
    assert b"missing.json" in p.stderr, p.stderr
    p = subprocess.run([MILE, "--kernel"], capture_output=True, timeout=30)
    eq(p.returncode, 1)
    assert b"needs an argument" in p.stderr, p.stderr


@check("an unknown msg_type of 100 KB is logged truncated to one short line")
def _():
    km2, kc2, out2, err2 = start()  # the first kernel is shut down by now
    try:
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect("%s://%s:%d" % (km2.transport, km2.ip, km2.shell_port))
        s.send_multipart(signed(kc2.session.key, "x" * 100000 + "\nmile kernel: forged"))
        time.sleep(0.5 * SLOW)
        s.close()
        eq(request(kc2, "kernel_info")["status"], "ok", "alive")
        with open(err2.name, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    finally:
        kc2.stop_channels()
        km2.shutdown_kernel(now=True)
        for f in (out2, err2):
            f.close()
            os.unlink(f.name)
    echoed = [line for line in lines if "xxxxxxxx" in line]
    eq(len(echoed), 1, "one line")
    assert len(echoed[0]) < 300 and echoed[0].endswith("bytes)"), echoed[0][:400]
    assert not any(line.startswith("mile kernel: forged") for line in lines), "a forged line"


kerr.close()
with open(kerr.name, "rb") as f:
    log = f.read().decode("utf-8", "replace")
for name in (kout.name, kerr.name):
    os.unlink(name)
if log.strip():
    print("# kernel stderr:\n" + "".join("#   " + line + "\n" for line in log.splitlines()))
failed = results.count(False)
print("%d tests, %d failed" % (len(results), failed))
sys.exit(1 if failed else 0)
