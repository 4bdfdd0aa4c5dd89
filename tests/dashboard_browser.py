#!/usr/bin/env python3
"""The training dashboard in a real browser: starts a tiny mmrec-train with
--dashboard on a free loopback port, loads the page in headless Chromium
(driven over the DevTools protocol on a pipe), checks that the charts gain
points while training runs and that every request the page made went to the
dashboard itself, and writes a screenshot. Then stops the run from the page:
a wrong token is refused and training goes on; the token mmrec-train printed
makes it write a checkpoint and exit 0, as Ctrl-C does.

usage: dashboard_browser.py MMREC_TRAIN CONFIG.json SCREENSHOT.png"""
import base64
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Browser:
    """Chromium with --remote-debugging-pipe: JSON messages ending in NUL on fds 3 (in) and 4 (out)."""

    def __init__(self, profile):
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()

        def fds():  # the pipe ends become fds 3 and 4 (moved above 4 first, so neither clobbers the other)
            a, b = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            sys.exit("dashboard_browser: chromium is not installed (scripts/setup.sh installs it)")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", "--window-size=1100,1500",
             "--user-data-dir=" + profile, "about:blank"],
            preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile + ".log"), "w"))
        os.close(to_r)
        os.close(from_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.from_r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.from_r, 65536)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=20):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    train, base_config, screenshot = sys.argv[1:4]
    tmp = tempfile.mkdtemp(prefix="mmrec_dashboard_")
    cfg = json.load(open(base_config))
    cfg["train"].update({"steps": 20000, "threads": 1})
    cfg["log"].update({"interval": 5, "eval_interval": 100, "progress": "lines"})
    cfg["checkpoint"] = {"interval": 0}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f)
    run_dir = os.path.join(tmp, "run")
    out = open(os.path.join(tmp, "train.log"), "w+")
    trainer = subprocess.Popen([train, os.path.join(tmp, "config.json"), "--run-dir", run_dir, "--dashboard", "0"],
                               stdout=out, stderr=subprocess.STDOUT)
    browser = None
    try:
        port = None
        deadline = time.time() + 60
        while port is None and time.time() < deadline and trainer.poll() is None:
            time.sleep(0.2)
            out.seek(0)
            m = re.search(r"dashboard: http://127\.0\.0\.1:(\d+)/", out.read())
            port = m and int(m.group(1))
        if port is None:
            out.seek(0)
            sys.exit("dashboard_browser: mmrec-train printed no dashboard address:\n" + out.read())
        origin = f"http://127.0.0.1:{port}"

        browser = Browser(os.path.join(tmp, "profile"))
        # Chromium can take a while to start on a loaded 2-core machine (the ASan suite runs beside
        # other tests): the first answer gets a long deadline, later calls the default.
        browser.call("Browser.getVersion", timeout=120)
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Network.enable", session=session)
        browser.call("Page.enable", session=session)
        browser.call("Page.navigate", {"url": origin + "/"}, session=session)

        def points():
            r = browser.call("Runtime.evaluate", {
                "expression": "window.mmrecDashboard ? window.mmrecDashboard.points() : -1",
                "returnByValue": True}, session=session)
            return r["result"].get("value", -1)

        def wait_for(cond, seconds, what):
            end = time.time() + seconds
            while time.time() < end:
                v = points()
                if cond(v):
                    return v
                time.sleep(0.25)
            sys.exit(f"dashboard_browser: {what} within {seconds} s (points: {points()})")

        first = wait_for(lambda v: v > 0, 60, "the charts got no points")
        later = wait_for(lambda v: v >= first + 10, 60, "the charts did not grow while training ran")
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

        urls = [e["params"]["request"]["url"] for e in browser.events
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == session]
        off = [u for u in urls if not u.startswith(origin + "/")]
        if off:
            sys.exit("dashboard_browser: the page made requests off the dashboard: " + ", ".join(off))
        needed = {"/", "/assets/uPlot.iife.min.js", "/assets/dashboard.js", "/api/events"}
        seen = {u[len(origin):] for u in urls}
        if not needed <= seen:
            sys.exit(f"dashboard_browser: the page did not load {sorted(needed - seen)}")
        print(f"dashboard_browser: {first} -> {later} points while training; {len(urls)} requests, all to {origin}; "
              f"screenshot {screenshot}")

        def js(expr):
            r = browser.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
            return r["result"].get("value")

        def stop_with(token):
            js("document.getElementById('stopmsg').textContent = ''")
            js(f"document.getElementById('token').value = {json.dumps(token)}; document.getElementById('stop').click()")
            end = time.time() + 20
            while time.time() < end:
                msg = js("document.getElementById('stopmsg').textContent")
                if msg:
                    return msg
                time.sleep(0.1)
            sys.exit("dashboard_browser: the stop button got no answer")

        out.seek(0)
        m = re.search(r"stop token: ([0-9a-f]{32})", out.read())
        if not m:
            sys.exit("dashboard_browser: mmrec-train printed no stop token")
        if js("document.getElementById('stopbox').hidden") is not False:
            sys.exit("dashboard_browser: the page offers no stop control beside a training run")
        refused = stop_with("0" * 32)
        if "wrong stop token" not in refused:
            sys.exit(f"dashboard_browser: a wrong token got: {refused}")
        time.sleep(1)
        if trainer.poll() is not None:
            sys.exit("dashboard_browser: the run stopped on a wrong token")
        accepted = stop_with(m.group(1))
        try:
            rc = trainer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sys.exit(f"dashboard_browser: the run did not stop after the page's stop ({accepted})")
        out.seek(0)
        log = out.read()
        ckpts = os.listdir(os.path.join(run_dir, "checkpoints")) if os.path.isdir(os.path.join(run_dir, "checkpoints")) else []
        if rc != 0 or "interrupted at step" not in log or not any(c.startswith("step-") for c in ckpts):
            sys.exit(f"dashboard_browser: after the page's stop: exit {rc}, checkpoints {ckpts}, log tail:\n{log[-800:]}")
        print(f"dashboard_browser: stopped from the page ({accepted}); exit 0 with checkpoint {sorted(ckpts)[-1]}")
        print("1 passed, 0 failed")
    finally:
        if browser:
            browser.close()
        if trainer.poll() is None:
            trainer.send_signal(signal.SIGINT)
            try:
                trainer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                trainer.kill()
                trainer.wait()
        out.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
