#!/usr/bin/env python3
"""mile teleop driven by a real headless browser (Debian's chromium + chromium-driver
through python3-selenium): the page, its token, takeovers on exact steps, the frame
rate, watchers, malformed messages, a browser closed mid-episode, the run directory.

usage: test_teleop_browser.py MILE [--task lunar|drawer] [--screenshot PNG]
                              [--no-rate-check] [--wrap "valgrind ..."]
"""
import argparse
import csv
import http.client
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains

ap = argparse.ArgumentParser()
ap.add_argument("mile")
ap.add_argument("--task", default="lunar", choices=["lunar", "drawer"])
ap.add_argument("--screenshot")
ap.add_argument("--no-rate-check", action="store_true")
ap.add_argument("--wrap", default="")
args = ap.parse_args()

work = tempfile.mkdtemp(prefix="mile-teleop-")
env_name = "LunarLander-v3" if args.task == "lunar" else "drawer-open-v3"
cmd = shlex.split(args.wrap) + [
    args.mile, "teleop", "--out", work, "--dir", work + "/run", "--no-open",
    "--set", "env=" + env_name, "--set", "rounds=1", "--set", "episodes_per_round=2",
    # drawer: 2 x 300 steps at 80 a second (~8 s running): with 150 a loaded machine's
    # browser once took longer over the watcher checks than the run had left
    "--set", "max_episode_steps=" + ("400" if args.task == "lunar" else "300"),
    "--set", "eval_episodes=1", "--set", "epochs=1", "--set", "batch_size=64", "--set", "progress=false"]
log = open(work + "/stderr.txt", "w+")
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
t_start = time.monotonic()


def fail(msg):
    log.flush()
    log.seek(0)
    sys.stderr.write("mile teleop stderr:\n" + log.read()[-4000:] + "\n")
    proc.kill()
    sys.exit("FAIL: " + msg)


def check(cond, msg):
    if not cond:
        fail(msg)


line = proc.stdout.readline()
check(line.startswith("mile teleop: open http://127.0.0.1:"), "no URL line on stdout: %r" % line)
url = line.split()[-1]
u = urllib.parse.urlsplit(url)
token = urllib.parse.parse_qs(u.query)["token"][0]
host, port = u.hostname, u.port
print("url", url, "after %.1fs" % (time.monotonic() - t_start))


def http_status(path, headers=None):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


# --- the token: page and WebSocket alike ---------------------------------------------
ws_headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
check(http_status("/") == 403, "page without a token is not 403")
check(http_status("/?token=" + token[:-1] + "0") == 403 or token.endswith("0"), "wrong token is not 403")
check(http_status("/?token=x" + token) == 403, "wrong token is not 403")
check(http_status("/ws?token=nope", ws_headers) == 403, "WebSocket with a wrong token is not 403")
check(http_status("/ws", ws_headers) == 403, "WebSocket without a token is not 403")
check(http_status("/?token=" + token) == 200, "page with the token is not 200")

# --- the browser ------------------------------------------------------------------------
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--window-size=1100,640", "--user-data-dir=" + work + "/chrome"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_script_timeout(30)


def js(expr):
    return driver.execute_script("return " + expr)


def wait(cond_js, timeout=20, what=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = js(cond_js)
        if v:
            return v
        if proc.poll() is not None:
            fail("mile teleop exited (%s) while waiting for %s" % (proc.returncode, what or cond_js))
        time.sleep(0.01)
    fail("timed out waiting for " + (what or cond_js))


try:
    driver.get(url)
    wait("window.teleop && window.teleop.role === 'controller'", 60, "the controller role")
    body = driver.find_element("tag name", "body")

    def keys(down=(), up=()):
        ch = ActionChains(driver)
        for k in up:
            ch.key_up(k)
        for k in down:
            ch.key_down(k)
        ch.perform()

    # ---- takeovers on exact steps: paused, one step at a time ('.') ------------------------
    keys(["p"], [])
    keys([], ["p"])
    wait("window.teleop.meta && window.teleop.meta.paused", 20, "the pause")
    time.sleep(0.1)
    meta = js("window.teleop.meta")
    ep0, t0 = meta["episode"], meta["step"]
    if args.task == "lunar":
        up, left, right = "\ue013", "\ue012", "\ue014"  # selenium Keys.ARROW_UP/LEFT/RIGHT
        plan = {t0 + 2: (up, 2), t0 + 3: (up, 2), t0 + 4: (left, 1), t0 + 7: (right, 3), t0 + 8: (None, 0)}
    else:
        plan = {t0 + 2: ("d", [1, 0, 0, -1]), t0 + 3: ("w", [0, 1, 0, -1]), t0 + 5: ("r", [0, 0, 1, -1])}
    held = []
    for t in range(t0, t0 + 11):
        check(js("window.teleop.meta.step") == t, "page shows step %s, expected %d" % (js("window.teleop.meta.step"), t))
        want = []
        if t in plan:
            want = [" "] + ([plan[t][0]] if plan[t][0] else [])
        keys([k for k in want if k not in held], [k for k in held if k not in want])
        held = want
        keys(["."], [])
        keys([], ["."])
        wait("window.teleop.meta.step === %d" % (t + 1), 20, "step %d" % (t + 1))
    keys([], held)
    held = []

    # ---- real time: frames at the task's rate; a held takeover's latency -------------------
    n_before = js("window.teleop.frameTimes.length")
    keys(["p"], [])
    keys([], ["p"])
    wait("!window.teleop.meta.paused", 10, "the resume")
    rate_js = """(() => { const T = window.teleop; return T.frameTimes.length; })()"""
    driver.execute_script("window.teleop.rt = []; window.teleop._push = window.teleop.frameTimes.push;")
    driver.execute_script("""
      const T = window.teleop; T.rt = [];
      const orig = T.frameTimes.push.bind(T.frameTimes);
      T.frameTimes.push = (x) => { T.rt.push([x, T.meta ? T.meta.episode : -1, T.meta ? T.meta.step : -1]); return orig(x); };""")
    time.sleep(0.6)
    if args.task == "lunar":
        # main engine first, then takeover (and the reverse on release): every human step has the key
        keys(["\ue013", " "], [])
        time.sleep(0.3)
        keys([], [" ", "\ue013"])
    time.sleep(1.1)
    rt = js("window.teleop.rt")
    fps = js("window.teleop.hello.fps")
    # LunarLander: every step a frame. MuJoCo renders in software (OSMesa): frames are
    # skipped, the simulation keeps its rate (steps per second from the frames' headers)
    best, cur = [], []
    for r in rt:
        if cur and r[1] == cur[-1][1] and r[2] > cur[-1][2]:
            cur.append(r)
        else:
            cur = [r]
        if len(cur) > len(best):
            best = list(cur)
    check(len(best) >= 8, "only %d frames of one episode arrived in 2 s" % len(best))
    secs = (best[-1][0] - best[0][0]) / 1000.0
    measured = (len(best) - 1) / secs
    steps = (best[-1][2] - best[0][2]) / secs
    print("frames: %d in %.2f s, %.2f fps delivered, %.2f steps/s (task rate %g)" % (len(best), secs, measured,
                                                                                  steps, fps))
    if not args.no_rate_check:
        check(abs(steps - fps) <= 0.1 * fps, "step rate %.2f not within 10%% of %g" % (steps, fps))
        if args.task == "lunar":
            check(abs(measured - fps) <= 0.1 * fps, "frame rate %.2f not within 10%% of %g" % (measured, fps))
    lat = js("window.teleop.latencies")
    if lat and args.task == "lunar":
        print("takeover latency (key down -> first frame after a human step): %.1f ms" % lat[-1])

    # ---- a second browser watches; malformed messages; unknown keys -----------------------
    main = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(url)
    wait("window.teleop && window.teleop.role === 'watcher'", 20, "the watcher role")
    driver.execute_script("window.teleop.send({type: 'input', keys: ['Space', 'ArrowUp']})")
    wait("window.teleop.notes.some(n => n.includes('watching'))", 10, "the watcher note")
    # malformed: not JSON, wrong types, unknown type, binary, 100 KB, unknown keys
    driver.execute_script("""
      const ws = new WebSocket('ws://' + location.host + '/ws' + location.search);
      window.bad = ws; window.badNotes = [];
      ws.onmessage = (e) => { if (typeof e.data === 'string') { const m = JSON.parse(e.data); if (m.type === 'note') window.badNotes.push(m.text); } };
      ws.onopen = () => { ws.send('{not json'); ws.send('[1,2]'); ws.send(JSON.stringify({type: 'input', keys: 7}));
        ws.send(JSON.stringify({type: 'warp'})); ws.send(new Uint8Array([1, 2, 3])); ws.send('x'.repeat(100000));
        ws.send(JSON.stringify({type: 'speed', value: 9})); };""")
    wait("window.badNotes && window.badNotes.length >= 5", 10, "notes about malformed messages")
    driver.close()
    driver.switch_to.window(main)
    driver.execute_script("window.teleop.send({type: 'input', keys: ['KeyZ', 'F13']})")
    wait("window.teleop.notes.some(n => n.includes('does nothing'))", 10, "the unknown-key note")
    driver.execute_script("window.teleop.send({type: 'input', keys: []})")

    # ---- the controller's browser closes mid-episode; a new one continues ------------------
    keys(["p"], [])
    keys([], ["p"])
    wait("window.teleop.meta.paused", 10, "the pause")
    time.sleep(0.1)
    before = js("window.teleop.meta")
    driver.switch_to.new_window("tab")
    closed_tab = main
    driver.switch_to.window(closed_tab)
    driver.close()  # the controlling browser leaves
    driver.switch_to.window(driver.window_handles[0])
    time.sleep(0.3)
    driver.get(url)
    wait("window.teleop && window.teleop.role === 'controller'", 20, "control after reconnecting")
    wait("window.teleop.firstMeta", 10, "a frame after reconnecting")
    after = js("window.teleop.firstMeta")
    check((after["episode"], after["step"]) == (before["episode"], before["step"]),
          "reconnected at episode %s step %s, left at %s %s" % (after["episode"], after["step"],
                                                                before["episode"], before["step"]))
    if args.screenshot:
        time.sleep(0.2)
        driver.save_screenshot(args.screenshot)
    # run out the collection, training and evaluation at 1x
    wait("!window.teleop.meta.paused", 10, "the resume after reconnecting")
    wait("window.teleop.status && window.teleop.status.phase === 'done'", 240, "the end of the run")
    saw_metrics = js("window.teleop.metrics.length")
    check(saw_metrics >= 2, "the page got %s metrics rows (initial + round 1 expected)" % saw_metrics)
finally:
    try:
        driver.quit()
    except Exception:
        pass

rc = proc.wait(timeout=120)
log.flush()
log.seek(0)
err = log.read()
check(rc == 0, "mile teleop exited with %d" % rc)
for needle in ["has control", "malformed", "disconnected"]:
    check(needle in err, "stderr lacks %r" % needle)
check("ERROR" not in err and "AddressSanitizer" not in err, "errors on stderr")

# ---- the run directory: exactly the planned takeovers, with their actions ---------------
rows = list(csv.DictReader(open(work + "/run/dataset.csv")))
tele = list(csv.DictReader(open(work + "/run/teleop.csv")))
check(len(rows) == len(tele), "dataset.csv has %d rows, teleop.csv %d" % (len(rows), len(tele)))
first_ep = [r for r in rows if int(r["episode"]) == ep0 - 1]
check(len(first_ep) > t0 + 11, "the first episode is too short")
for r in first_ep[t0:t0 + 11]:
    t = int(r["t"])
    nu = int(r["nu"])
    if t in plan:
        check(nu == 1, "step %d: nu = %d, expected 1" % (t, nu))
        if args.task == "lunar":
            check(int(float(r["ah"])) == plan[t][1], "step %d: action %s, expected %d" % (t, r["ah"], plan[t][1]))
        else:
            got = [float(r["ah_%d" % i]) for i in range(4)]
            check(got == plan[t][1], "step %d: action %s, expected %s" % (t, got, plan[t][1]))
    else:
        check(nu == 0, "step %d: nu = %d, expected 0" % (t, nu))
check(all(int(r["nu"]) == 0 for r in first_ep[:t0]), "a takeover before the planned steps")
# every step of every episode recorded once, in order; p(s) and wall-clock times there
for ep in sorted({r["episode"] for r in rows}):
    ts = [int(r["t"]) for r in rows if r["episode"] == ep]
    check(ts == list(range(len(ts))), "episode %s: steps %s..." % (ep, ts[:5]))
walls = [float(r["wall_time"]) for r in tele]
check(all(b >= a for a, b in zip(walls, walls[1:])), "wall-clock times go back")
check(all(0 <= float(r["p"]) <= 1 for r in rows), "p(s) outside [0, 1]")
check(any(float(r["p"]) > 0 for r in rows), "the learner's p(s) is never recorded")
realtime = [r for r in rows if int(r["episode"]) == ep0 - 1 and int(r["t"]) >= t0 + 11 and int(r["nu"]) == 1]
if args.task == "lunar" and realtime:
    check(all(int(float(r["ah"])) == 2 for r in realtime), "held takeover recorded another action than 2")
# ---- mile replay of the episode with the planned takeovers: a PNG per step, marked = nu --
out = subprocess.run([args.mile, "replay", work + "/run", "--round", "1", "--episode", str(ep0), "--png",
                      work + "/replay"], capture_output=True, text=True, timeout=300)
check(out.returncode == 0, "mile replay exited with %d: %s" % (out.returncode, out.stderr))
check("replayed observations equal the recorded ones (max |difference| 0)" in out.stdout, out.stdout)
frames = list(csv.DictReader(open(work + "/replay/frames.csv")))
check([int(f["nu"]) for f in frames] == [int(r["nu"]) for r in first_ep], "replayed frames' nu != dataset.csv's")
check(all(os.path.exists(work + "/replay/" + f["file"]) for f in frames), "a frame is missing")
print("ok: %d steps, %d takeovers, %.1fs" % (len(rows), sum(int(r["nu"]) for r in rows), time.monotonic() - t_start))
