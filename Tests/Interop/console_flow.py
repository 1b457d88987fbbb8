#!/usr/bin/env python3
"""The admin console in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by Selenium (python3-selenium), against the real executables.

1. Hana (a staff role with users.manage) sets her password through "Forgot password?", signs in
   and lands in the console; types "ja" in the agent directory, opens Jane, sends the password
   reset email and sees it become "Delivered" on the page by itself; opens the diagnosis.
2. An address on the suppression list is removed with a reason, and the reset email is sent
   again from the same page.
3. Andy (an agent without users.manage) sees no send button, and a form he crafts is refused.
4. Every console page is saved as a screenshot at 375 px and 1440 px wide.

    console_flow.py BASE_URL MAILDIR SHOTS NOTIFIER_DB
Exits 0 when every step showed what it should.
"""

import glob
import os
import re
import sqlite3
import sys
import time
from email import policy
from email.parser import BytesParser

import axe_core_python
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

base, maildir, shots, notifier_db = sys.argv[1:5]
os.makedirs(shots, exist_ok=True)
PASSWORD = "a console passphrase, long enough"

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1440,900"):
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(20)
console_errors = []
overflow = []  # pages wider than the screen (a horizontal scroll bar)
accessibility = []  # what axe-core found
with open(os.path.join(os.path.dirname(axe_core_python.__file__), "axe.min.js"), encoding="utf-8") as source:
    AXE = source.read()


def check_accessibility(name):
    """axe-core's WCAG 2.1 A/AA and best-practice rules on the page as it is now."""
    driver.execute_script(AXE)
    found = driver.execute_async_script(
        "var done = arguments[0];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
        ".then(function (r) { done(r.violations.map(function (v) {"
        "  return v.impact + ' ' + v.id + ': ' + v.help + ' — ' + v.nodes.slice(0, 2).map(function (n) { return n.html.slice(0, 100); }).join(' | '); })); })"
        ".catch(function (e) { done(['axe failed: ' + e]); });"
    )
    accessibility.extend(name + ": " + item for item in found)


def shot(name, width=1440):
    """A screenshot of the whole page at `width` CSS pixels (a phone's 375 is emulated: a
    headless window is never narrower than 500)."""
    def emulate(height):
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600,
        })
    emulate(900)
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, 600)")
    emulate(min(height, 6000))
    wide = driver.execute_script("return document.documentElement.scrollWidth > document.documentElement.clientWidth")
    if driver.current_url.startswith(base):
        check_accessibility(name)
    driver.save_screenshot(os.path.join(shots, name + ".png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    if wide:
        overflow.append(name)


def expect(condition, what, timeout=10):
    """Checks `condition` (a function), waiting up to `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.05)
    shot("failed")
    print("FAILED: " + what + "\n--- " + driver.current_url + " ---\n" + driver.page_source[:3000])
    driver.quit()
    sys.exit(1)


def text():
    return driver.find_element(By.TAG_NAME, "body").text


def mail_link(address, after):
    """The reset link of the newest mail to `address` that arrived after `after` files."""
    deadline = time.time() + 15
    while time.time() < deadline:
        files = sorted(glob.glob(os.path.join(maildir, "new", "*")), key=os.path.getmtime)
        for path in reversed(files[after:]):
            with open(path, "rb") as handle:
                message = BytesParser(policy=policy.default).parse(handle)
            if address not in str(message["To"]):
                continue
            body = message.get_body(preferencelist=("plain",)).get_content()
            match = re.search(r"(https?://\S+/password/reset\?token=[A-Za-z0-9_-]+)", body)
            if match:
                return match.group(1)
        time.sleep(0.1)
    return None


def show_mail(address, name):
    """Opens the newest mail to `address` as its HTML part renders, for a screenshot; returns its text part."""
    files = sorted(glob.glob(os.path.join(maildir, "new", "*")), key=os.path.getmtime)
    for path in reversed(files):
        with open(path, "rb") as handle:
            message = BytesParser(policy=policy.default).parse(handle)
        if address in str(message["To"]):
            page = os.path.join(shots, name + ".html")
            with open(page, "w", encoding="utf-8") as out:
                out.write(message.get_body(preferencelist=("html",)).get_content())
            driver.get("file://" + page)
            return message.get_body(preferencelist=("plain",)).get_content()
    return ""


def mail_count():
    return len(glob.glob(os.path.join(maildir, "new", "*")))


def set_password_and_sign_in(address):
    """The product's own way: Forgot password → mail → new password → sign in."""
    before = mail_count()
    driver.get(base + "/password/forgot")
    driver.find_element(By.NAME, "email").send_keys(address)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    expect(lambda: "If an account exists" in text(), "the forgot-password answer for " + address)
    link = mail_link(address, before)
    expect(lambda: link is not None, "the reset mail to " + address)
    driver.get(link)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.NAME, "confirm").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    expect(lambda: "Your password was changed" in text(), "the password of " + address + " was changed")
    # The console sends a signed-out visitor to the sign-on page, and back after.
    driver.get(base + "/console/organizations")
    expect(lambda: "/?next=" in driver.current_url, "signed out, the console leads to the sign-on page")
    driver.find_element(By.NAME, "email").send_keys(address)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    expect(lambda: driver.current_url.endswith("/console/organizations"), "signing in comes back to the console page")


def check_browser_log():
    """Errors the browser reported so far (a CSP violation, a failed request, a script error)."""
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            console_errors.append(driver.current_url + ": " + entry.get("message", ""))


def sign_out():
    driver.find_element(By.XPATH, "//header//button[normalize-space()='Sign out']").click()
    expect(lambda: "You are signed out" in text(), "signed out")


try:
    driver.get(base + "/")
    shot("sign-on-375", 375)
    shot("sign-on-1440", 1440)

    # 1. Hana finds Jane in the directory, sends the reset email, watches it arrive.
    set_password_and_sign_in("hana@example.com")
    driver.get(base + "/console")
    box = driver.find_element(By.ID, "filter")
    expect(lambda: driver.switch_to.active_element == box, "the filter box has the focus")
    box.send_keys("ja")
    expect(lambda: "Jane Doe" in driver.find_element(By.ID, "results").text
           and "Hana Helpdesk" not in driver.find_element(By.ID, "results").text,
           "typing 'ja' narrows the directory to Jane, without a page load")
    expect(lambda: driver.current_url.endswith("/console?q=ja"), "the address bar follows the filter")
    shot("directory-1440")
    box.send_keys(Keys.ARROW_DOWN)
    expect(lambda: driver.switch_to.active_element.text == "Jane Doe", "arrow down moves from the filter to the first result")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    expect(lambda: driver.find_element(By.TAG_NAME, "h1").text == "Jane Doe", "Enter opens Jane's page")
    shot("user-before-send-1440")
    driver.find_element(By.XPATH, "//button[normalize-space()='Send password reset email']").click()
    expect(lambda: "Password reset email to jane@example.com" in text(), "the page says where the email went")
    expect(lambda: "works until" in text(), "and when the link expires")
    state = lambda: driver.find_element(By.CSS_SELECTOR, "[data-state]").text
    expect(lambda: state() == "Delivered", "the message becomes Delivered on the page by itself", timeout=20)
    expect(lambda: "Accepted by" in driver.find_element(By.CSS_SELECTOR, "[data-detail]").text, "with the server's reply")
    shot("user-after-send-1440")
    shot("user-after-send-375", 375)
    user_page = driver.current_url
    plain = show_mail("jane@example.com", "mail-password-reset")
    expect(lambda: "Reset your password" in text() and "Rekey" in text(), "the reset mail renders with the brand and its button")
    shot("mail-password-reset-375", 375)
    shot("mail-password-reset-1440", 1440)
    expect(lambda: "/password/reset?token=" in plain, "the text part carries the link")
    driver.get(user_page)
    diagnosis = driver.find_element(By.ID, "diagnosis")
    driver.execute_script("arguments[0].scrollIntoView()", diagnosis)
    expect(lambda: "Why didn't they get it?" in diagnosis.text, "the diagnosis panel")
    expect(lambda: "Next step" in driver.find_element(By.CSS_SELECTOR, "ol.findings").text, "findings with a next step")
    driver.find_element(By.ID, "diagnosis").find_element(By.XPATH, "..").screenshot(os.path.join(shots, "diagnosis-panel.png"))
    driver.get(base + "/console/search?q=jane%40example.com")
    expect(lambda: "exact address match" in text(), "unified search puts the exact address first")
    shot("search-1440")
    shot("search-375", 375)

    # 2. A suppressed address: removed with a reason, then the reset email again from the same page.
    with sqlite3.connect(notifier_db, timeout=10) as db:
        db.execute(
            "INSERT INTO suppressions (normalized, address, reason, created_at, message_id) VALUES (?, ?, ?, ?, ?)",
            ("zed@example.org", "zed@example.org", "550 5.1.1 <zed@example.org>: Recipient address rejected", int(time.time() * 1000), "m_bounced"),
        )
    driver.get(base + "/console/suppressions")
    expect(lambda: "zed@example.org" in text(), "the suppression is listed")
    shot("suppressions-1440")
    shot("suppressions-375", 375)
    driver.find_element(By.CSS_SELECTOR, "input[name=reason]").send_keys("the user fixed the mailbox (ticket 4711)")
    driver.find_element(By.XPATH, "//button[normalize-space()='Remove']").click()
    expect(lambda: "is no longer suppressed" in text(), "the removal")
    driver.find_element(By.XPATH, "//main//button[normalize-space()='Send password reset email']").click()
    expect(lambda: "Password reset email to zed@example.org" in text(), "resent from the same page")
    expect(lambda: state() == "Delivered", "the resend is delivered", timeout=20)

    for page, name in (("/console/users", "users"), ("/console/health", "health"), ("/console/audit", "audit"), ("/console/organizations", "organizations")):
        driver.get(base + page)
        expect(lambda: driver.find_elements(By.TAG_NAME, "h1"), page)
        shot(name + "-1440", 1440)
        shot(name + "-375", 375)
    driver.get(base + "/console/audit")
    expect(lambda: "Removed" in text() or "Created the user" in text(), "the audit trail lists admin actions")
    driver.get(base + "/console")
    shot("directory-375", 375)
    check_browser_log()
    sign_out()

    # 3. Andy (agent, read-only) sees no send button; a form he makes himself is refused.
    set_password_and_sign_in("andy@example.com")
    driver.get(base + "/console?q=jane")
    expect(lambda: "Jane Doe" in driver.find_element(By.ID, "results").text, "Andy finds Jane too")
    driver.find_element(By.LINK_TEXT, "Jane Doe").click()
    expect(lambda: driver.find_element(By.TAG_NAME, "h1").text == "Jane Doe", "Andy opens Jane's page")
    expect(lambda: not driver.find_elements(By.XPATH, "//button[normalize-space()='Send password reset email']"), "no send button for Andy")
    expect(lambda: "j***@example.com" in text() and "jane@example.com" not in text(), "addresses masked for Andy")
    shot("user-read-only-1440")
    check_browser_log()
    token = driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    user_path = driver.current_url.split(base, 1)[1].split("?")[0]
    driver.execute_script(
        "var f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "var i = document.createElement('input'); i.name = 'csrf'; i.value = arguments[1]; f.appendChild(i);"
        "document.body.appendChild(f); f.submit();",
        user_path + "/reset", token,
    )
    expect(lambda: "users.manage" in text() and driver.current_url.endswith("/reset"), "the crafted form is refused, naming the permission")
    shot("crafted-post-refused-1440")
finally:
    driver.quit()

if accessibility:
    print("FAILED: accessibility (axe-core):\n" + "\n".join(accessibility))
    sys.exit(1)
if overflow:
    print("FAILED: these pages scroll sideways: " + ", ".join(overflow))
    sys.exit(1)
if console_errors:
    print("FAILED: the browser reported errors (a CSP violation, a failed request):\n" + "\n".join(console_errors))
    sys.exit(1)
print("ok")
