#!/usr/bin/env python3
"""mile replay in a real headless browser (Debian's chromium + chromium-driver through
python3-selenium): a short `mile train` run (simulated human), then `mile replay RUN
--once --paused` of one of its episodes: the token, single steps while
paused (--paused) with the intervention steps (nu = 1) highlighted exactly, slow motion, every
frame's step and nu against dataset.csv, the summary line (replayed observations equal
the recorded ones), exit status 0.

usage: test_replay_browser.py MILE [--wrap "valgrind ..."] [--screenshot PNG] [--no-rate-check]
"""
import argparse
import csv
import http.client
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains

ap = argparse.ArgumentParser()
ap.add_argument("mile")
ap.add_argument("--wrap", default="")
ap.add_argument("--screenshot")
ap.add_argument("--no-rate-check", action="store_true")  # sanitizers: frames may drop (see the end)
args = ap.parse_args()

work = tempfile.mkdtemp(prefix="mile-replay-")
t_start = time.monotonic()
subprocess.run([args.mile, "train", "--dir", work + "/run", "--set", "env=LunarLander-v3", "--set", "rounds=1",
                "--set", "episodes_per_round=3", "--set", "max_episode_steps=80", "--set", "eval_episodes=1",
                "--set", "epochs=1", "--set", "batch_size=64", "--set", "progress=false", "--set", "seed=2"],
               check=True, stdout=subprocess.DEVNULL)
rows = list(csv.DictReader(open(work + "/run/dataset.csv")))
by_ep = {}
for r in rows:
    by_ep.setdefault(int(r["episode"]), []).append(int(r["nu"]))
# the episode with the most interventions among those whose first 20 steps (the
# single-stepped ones) hold both nu = 0 and nu = 1
index = max(by_ep, key=lambda e: (0 in by_ep[e][:20] and 1 in by_ep[e][:20], sum(by_ep[e])))
nu = by_ep[index]
steps = len(nu)
if sum(nu) == 0:
    sys.exit("FAIL: the simulated human never intervened (no highlight to check)")

cmd = shlex.split(args.wrap) + [args.mile, "replay", work + "/run", "--round", "1", "--episode", str(index + 1),
                                "--once", "--no-open", "--paused"]
log = open(work + "/stderr.txt", "w+")
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)


def fail(msg):
    log.flush()
    log.seek(0)
    sys.stderr.write("mile replay stderr:\n" + log.read()[-4000:] + "\n")
    proc.kill()
    sys.exit("FAIL: " + msg)


def check(cond, msg):
    if not cond:
        fail(msg)


line = proc.stdout.readline()
check(line.startswith("mile replay: open http://127.0.0.1:"), "no URL line on stdout: %r" % line)
url = line.split()[-1]
u = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
c.request("GET", "/")
check(c.getresponse().status == 403, "the page without its token is not 403")
c.close()

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1100,640",
          "--user-data-dir=" + work + "/chrome"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def js(expr):
    return driver.execute_script("return " + expr)


def wait(cond_js, timeout=20, what=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = js(cond_js)
        if v:
            return v
        if proc.poll() is not None:
            fail("mile replay exited (%s) while waiting for %s" % (proc.returncode, what or cond_js))
        time.sleep(0.01)
    fail("timed out waiting for " + (what or cond_js))


def keys(*names):
    ch = ActionChains(driver)
    for k in names:
        ch.key_down(k).key_up(k)
    ch.perform()


single = 0
try:
    driver.get(url)
    wait("window.teleop && window.teleop.role === 'controller' && window.teleop.meta", 60, "the first frame")
    check(js("window.teleop.meta.paused") and js("window.teleop.meta.step") == 0, "not paused at step 0 (--paused)")
    t0 = 0
    # single steps: the highlight (red border, banner) exactly on the recorded nu = 1 steps
    for t in range(t0, min(t0 + 20, steps - 1)):
        meta = js("window.teleop.meta")
        check(meta["step"] == t, "page shows step %s, expected %d" % (meta["step"], t))
        check(meta["nu"] == nu[t], "step %d: frame nu = %s, dataset %d" % (t, meta["nu"], nu[t]))
        marked = js("document.getElementById('stage').classList.contains('takeover')")
        check(marked == (nu[t] == 1), "step %d: highlighted = %s, nu = %d" % (t, marked, nu[t]))
        if nu[t] == 1 and args.screenshot and not os.path.exists(args.screenshot):
            driver.save_screenshot(args.screenshot)
        keys(".")
        wait("window.teleop.meta.step === %d" % (t + 1), 20, "step %d" % (t + 1))
        single += 1
    stepped = nu[t0:t0 + single]
    check(0 in stepped and 1 in stepped, "the single steps saw nu = %s only" % set(stepped))
    keys("2")  # 0.5x
    wait("window.teleop.meta.speed === 0.5", 10, "the slow motion")
    keys("p")
    wait("window.teleop.status && window.teleop.status.text.includes('replayed observations')", 60, "the end")
    seen = js("window.teleop.replay")
finally:
    try:
        driver.quit()
    except Exception:
        pass

out, _ = proc.communicate(timeout=60)
check(proc.returncode == 0, "mile replay exited with %d" % proc.returncode)
check("replayed observations equal the recorded ones (max |difference| 0)" in out, "summary: %r" % out)
log.seek(0)
err = log.read()
check("ERROR" not in err and "AddressSanitizer" not in err, "errors on stderr")
for step, n in seen:
    check(0 <= step < steps and n == nu[step], "a frame of step %s with nu = %s (dataset %s)" % (
        step, n, nu[step] if 0 <= step < steps else "-"))
distinct = {s for s, _ in seen}
check(steps - 1 in distinct, "the last step never shown")
# the server drops frames the browser has not read yet (a slow, sanitized build renders
# slower than 0.5x): every step's frame is the PNG tests' business (tests/lua/test_replay.lua)
if not args.no_rate_check:
    check(len(distinct) >= 0.5 * steps, "only %d of %d steps shown" % (len(distinct), steps))
print("ok: episode %d, %d steps (%d interventions), %d shown, %d single steps, %.1fs" % (
    index, steps, sum(nu), len(distinct), single, time.monotonic() - t_start))
